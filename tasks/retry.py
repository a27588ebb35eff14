"""The retry policy the tasks share: retry what is transient, and nothing else.

This is the only retry layer: the client never retries, so a failing call is never retried twice over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task, exponential_backoff

from imsflow.errors import ImsflowError

#: Backoff for API steps: 2 s, 4 s, 8 s, 16 s (Prefect adds jitter on top).
BACKOFF = exponential_backoff(backoff_factor=2)
RETRIES = 4
JITTER = 0.5


def _configured_delay(task: Task[Any, Any], attempt: int) -> float:
    delays = task.retry_delay_seconds
    if isinstance(delays, int | float):
        return float(delays)
    if isinstance(delays, Sequence) and delays:
        return float(delays[min(attempt, len(delays) - 1)])
    return 0.0


async def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry throttling, 5xx and transport errors; never a 4xx, a failed job or a bad request.

    Prefect's retry delays are fixed when the task is defined, but a throttled cloud tells us how long to
    wait (``Retry-After``); the difference is waited here so that the next attempt does not come early.
    """
    try:
        await state.aresult()
    except ImsflowError as exc:
        if not exc.retryable:
            return False
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            extra = float(retry_after) - _configured_delay(task, task_run.run_count - 1)
            if extra > 0:
                await asyncio.sleep(extra)
        return True
    except Exception:
        return False
    return False
