"""The token lock: threads queue on one lock, coroutines wait without blocking the loop, a dead holder's lock
comes free (no Prefect: the flow side of single-flight is in tests/flows/test_token_single_flight.py)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from pathlib import Path

from runtime.locking import FlockLockManager


def test_threads_queue_on_one_lock(tmp_path: Path) -> None:
    manager = FlockLockManager(tmp_path)
    inside, overlaps = [0], [0]
    guard = threading.Lock()

    def work(i: int) -> None:
        for _ in range(20):
            assert manager.acquire_lock("k", holder=f"h{i}")
            with guard:
                inside[0] += 1
                overlaps[0] = max(overlaps[0], inside[0])
            with guard:
                inside[0] -= 1
            manager.release_lock("k", holder=f"h{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps[0] == 1
    assert not manager.is_locked("k")


async def test_coroutines_wait_without_blocking_the_loop(tmp_path: Path) -> None:
    manager = FlockLockManager(tmp_path)
    assert await manager.aacquire_lock("k", holder="first")
    assert manager.is_lock_holder("k", "first")
    assert not await manager.aacquire_lock("k", holder="second", acquire_timeout=0.05)

    async def release_soon() -> None:
        await asyncio.sleep(0.05)  # runs only if the waiter below yields the loop
        manager.release_lock("k", holder="first")

    releaser = asyncio.create_task(release_soon())
    assert await manager.aacquire_lock("k", holder="second", acquire_timeout=5)
    await releaser
    manager.release_lock("k", holder="second")


def _hold_and_die(directory: str, ready: multiprocessing.synchronize.Event) -> None:
    manager = FlockLockManager(Path(directory))
    manager.acquire_lock("k", holder="doomed")
    ready.set()
    import os

    os._exit(1)  # a crash: no release, no cleanup


def test_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_and_die, args=(str(tmp_path), ready))
    proc.start()
    proc.join(10)
    assert ready.is_set()
    manager = FlockLockManager(tmp_path)
    assert manager.acquire_lock("k", holder="next", acquire_timeout=1)
