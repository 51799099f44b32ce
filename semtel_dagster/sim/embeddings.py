"""``/v1/embeddings`` for the simulator: hashed bag-of-words vectors, a stand-in for a real model.

Each word (lower-cased, light stemming shared with the labeler) adds ±1 to one of ``DIMENSIONS``
buckets chosen by a stable hash, and the vector is L2-normalized. Deterministic across processes,
so texts sharing most words are close and unrelated texts are not; it is not semantic.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
from aiohttp import web

from semtel_dagster.sim.labeler import stem

DIMENSIONS = 384
_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


def _bucket(word: str, dims: int) -> tuple[int, float]:
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dims, 1.0 if (value >> 63) & 1 else -1.0


def hashed_embedding(text: str, dims: int = DIMENSIONS) -> list[float]:
    vector = np.zeros(dims, dtype=np.float64)
    for word in _WORDS.findall(text.casefold()):
        index, sign = _bucket(stem(word), dims)
        vector[index] += sign
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm else vector).tolist()


async def embeddings(request: web.Request) -> web.Response:
    """OpenAI ``embeddings.create`` response for a string or a list of strings."""
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        return _bad(f"Invalid JSON body: {exc}")
    inputs = body.get("input") if isinstance(body, dict) else None
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        return _bad("'input' must be a string or a non-empty list of strings")
    dims = body.get("dimensions") or DIMENSIONS
    if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
        return _bad(f"dimensions must be a positive integer, got {dims!r}")
    tokens = sum(len(_WORDS.findall(t)) for t in inputs)
    return web.json_response(
        {
            "object": "list",
            "model": body.get("model") or "sim-hashed-bow",
            "data": [{"object": "embedding", "index": i, "embedding": hashed_embedding(t, dims)} for i, t in enumerate(inputs)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _bad(message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_value"}},
        status=400,
    )
