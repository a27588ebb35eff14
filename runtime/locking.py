"""A lock manager for Prefect transactions that really serialises threads, coroutines and processes.

Prefect 3.9.1's ``FileSystemLockManager`` is not safe under contention: the winner creates an *empty*
lock file and writes the holder into it a moment later, and a loser that reads the file in between fails
with ``ValueError: EOF while parsing`` (reproduced with ten concurrent ``get-token`` tasks in one flow).
Its async acquire also falls back to the blocking, ``time.sleep``-polling sync path on that race, which
stalls the event loop that the current holder needs in order to finish. And a lock file left behind by a
killed process blocks every later run forever.

This manager takes an exclusive ``flock`` on one file per key instead:

* the kernel decides who holds the lock, so there is no window in which the state is half-written;
* separate ``open()`` calls conflict even inside one process, so coroutines and threads of the same
  process queue up exactly like other processes do;
* the kernel releases the lock when its holder dies, so a crash never leaves a stale lock behind;
* the async path polls with ``asyncio.sleep`` and never blocks the event loop.

It covers one host (as the file-system manager does). Several hosts sharing one cache need a shared lock
service, such as ``prefect_redis.RedisLockManager``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: How often a waiter looks again. Short: the token fetch the waiters queue behind takes well under 1 s.
POLL_SECONDS = 0.02


@dataclass
class _Held:
    holder: str
    fd: int
    expires: float | None


class FlockLockManager:
    """Implements Prefect's ``LockManager`` protocol with ``fcntl.flock`` (POSIX only)."""

    def __init__(self, directory: Path | Callable[[], Path]) -> None:
        # A callable is resolved at first use, so PREFECT_HOME may be set after this module is imported.
        self._directory = directory
        self._held: dict[str, _Held] = {}
        self._guard = threading.Lock()

    @property
    def directory(self) -> Path:
        path = self._directory() if callable(self._directory) else self._directory
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _path(self, key: str) -> Path:
        # Keys become file names; hash them so that any key is a safe, short name.
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.lock"

    def _try(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        self._expire(key)
        fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        expires = time.monotonic() + hold_timeout if hold_timeout is not None else None
        with self._guard:
            self._held[key] = _Held(holder=holder, fd=fd, expires=expires)
        return True

    def _expire(self, key: str) -> None:
        # A hold timeout is honoured by the process that holds the lock, the only one that can drop it.
        with self._guard:
            held = self._held.get(key)
            if held is None or held.expires is None or held.expires > time.monotonic():
                return
            del self._held[key]
        os.close(held.fd)

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        if self.is_lock_holder(key, holder):
            return True
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self._try(key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        if self.is_lock_holder(key, holder):
            return True
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self._try(key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    def release_lock(self, key: str, holder: str) -> None:
        with self._guard:
            held = self._held.get(key)
            if held is None or held.holder != holder:
                raise ValueError(f"No lock held by {holder} for transaction with key {key}")
            del self._held[key]
        # Closing the descriptor drops the flock; the file stays, empty and harmless, for the next holder.
        os.close(held.fd)

    def is_locked(self, key: str) -> bool:
        self._expire(key)
        with self._guard:
            if key in self._held:
                return True
        fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the probe lock, if it was taken
        return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        self._expire(key)
        with self._guard:
            held = self._held.get(key)
            return held is not None and held.holder == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            for held in self._held.values():
                os.close(held.fd)


__all__ = ["FlockLockManager"]
