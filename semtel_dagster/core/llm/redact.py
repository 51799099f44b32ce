"""Redaction of every error the LLM layer stores or logs: no key, token or conversation text leaves it.

Providers echo what they were sent: a 401 quotes the key ("Incorrect API key provided: sk-…"), a 500
page lists the request headers, a validation error repeats the body with the conversation in it.
Errors go to ``llm_responses.error``, reject reasons, run metadata and logs, so each one passes here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
ECHO_REMOVED = "[echoed request removed]"
MAX_ERROR_CHARS = 300
_SCAN_CHARS = 4000  # only the head of a long error page is kept, so only the head is scanned
_CHUNK = 24  # an echo is any run of this many characters of the request's text
_MIN_SECRET = 4

_PATTERNS = [
    # token characters exclude brackets, so an already redacted value is never matched again
    (re.compile(r"(?i)\bbearer\s+[^\s\"',;}\]\[]+"), "Bearer " + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"), "sk-" + REDACTED),
    (
        re.compile(
            r"(?i)\b(api[-_]?key|x-api-key|authorization|ocp-apim-subscription-key|access[-_]token)(\W{1,4})"
            r"(?:(?:bearer|basic)\s+)?(?:\[redacted\]|[^\s\"',;}\]\[]+)"
        ),
        r"\1\2" + REDACTED,
    ),
]
# where a body is echoed as JSON or a Python repr, what follows is the request
_BODY_MARKERS = re.compile(r"""["'](?:messages|role|content)["']\s*:""")


def redact(text: str, secrets: Iterable[str] = (), echoes: Iterable[str] = ()) -> str:
    """``text`` without the given secrets, anything shaped like a key or token, and anything from the
    first echo of one of ``echoes`` (the request's message texts, raw or JSON/repr-escaped) on."""
    text = text[:_SCAN_CHARS]
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            text = text.replace(secret, REDACTED)
    cut = _first_echo(text, echoes)
    if cut is not None:
        text = text[:cut].rstrip() + " " + ECHO_REMOVED
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text[:MAX_ERROR_CHARS]


def _first_echo(text: str, echoes: Iterable[str]) -> int | None:
    found = [m.start() for m in [_BODY_MARKERS.search(text)] if m]
    for echo in echoes:
        for form in {echo, json.dumps(echo)[1:-1], repr(echo)[1:-1]}:
            size = min(_CHUNK, len(form))
            if size < 12:  # too short to tell an echo from a coincidence
                continue
            for start in range(0, len(form) - size + 1, size // 2):
                at = text.find(form[start : start + size])
                if at >= 0:
                    found.append(at)
                    break
    return min(found) if found else None
