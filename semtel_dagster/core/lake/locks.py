"""Advisory file locks for writers that must not run at the same time on one machine's filesystem.

A lock is the kernel's ``flock`` on a small file that names its holder (pid, host, since). The
kernel drops it when the holder exits or is killed, so a crashed run never leaves a stale lock to
clean up by hand, and no lock file is ever deleted (deleting one would let a waiter hold a lock on
an unlinked file while a newcomer locks a fresh one). Object stores have no such locks: there the
lake relies on Delta's own conflict detection (``core.lake.delta``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

_POLL_SECONDS = 0.05


class LockHeld(RuntimeError):
    """Another process holds the lock; the message names it."""


@contextlib.contextmanager
def exclusive(path: Path, *, wait_seconds: float = 0.0, purpose: str = "") -> Iterator[None]:
    """Hold ``path``'s lock for the block; wait up to ``wait_seconds`` for it, then raise :class:`LockHeld`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(_held_message(path, purpose, wait_seconds)) from None
                time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "purpose": purpose}
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder(path: Path) -> dict | None:
    """Who holds ``path``'s lock as it says itself (None: nobody has written it yet, or it was released)."""
    try:
        return json.loads(Path(path).read_text() or "null")
    except (FileNotFoundError, ValueError):
        return None


def _held_message(path: Path, purpose: str, waited: float) -> str:
    who = None
    for _ in range(20):  # the holder writes its name right after taking the lock
        who = holder(path)
        if who:
            break
        time.sleep(_POLL_SECONDS)
    named = f"pid {who['pid']} on {who['host']}" if who else "another process"
    doing = f" ({who['purpose']})" if who and who.get("purpose") else ""
    waited_text = f" after waiting {waited:g}s" if waited else ""
    return f"{purpose or 'lock'}: held by {named}{doing}{waited_text}; lock file {path}"


def is_local(uri: str) -> bool:
    """A path on this machine's filesystem (``file://`` included), where file locks work."""
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


@contextlib.contextmanager
def dagster_instance_creation(dagster_home: Path, wait_seconds: float = 120.0) -> Iterator[None]:
    """Serialize creating a Dagster instance in one ``DAGSTER_HOME``: two processes initializing a fresh
    SQLite instance at once race on its schema (``table secondary_indexes already exists``)."""
    with exclusive(Path(dagster_home) / ".instance.lock", wait_seconds=wait_seconds, purpose="creating the Dagster instance"):
        yield
