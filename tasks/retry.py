"""The retry policy the tasks share: retry what is transient, and nothing else.

This is the only retry layer: the client never retries and the flows do not retry, so a failing call is
never retried twice over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task, exponential_backoff
from prefect.utilities.math import lower_clamp_multiple

from imsflow.errors import ImsflowError
from tasks import runtime

#: Backoff for API steps: 2 s, 4 s, 8 s, 16 s (Prefect adds jitter on top).
BACKOFF = exponential_backoff(backoff_factor=2)
RETRIES = 4
JITTER = 0.5


def _shortest_delay(task: Task[Any, Any], attempt: int) -> float:
    """The shortest delay Prefect may pick before retry ``attempt`` (0-based), jitter included."""
    delays = task.retry_delay_seconds
    if isinstance(delays, int | float):
        delay = float(delays)
    elif isinstance(delays, Sequence) and delays:
        delay = float(delays[min(attempt, len(delays) - 1)])
    else:
        return 0.0
    jitter = task.retry_jitter_factor
    if jitter and delay > 0:
        # Prefect's jitter draws from a clamped Poisson interval whose lower end is below the delay.
        delay *= max(0.0, lower_clamp_multiple(1 + jitter))
    return delay


async def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry throttling, 5xx and transport errors; never a 4xx, a failed job or a bad request.

    Prefect's retry delays are fixed when the task is defined, but a throttled cloud tells us how long to
    wait (``Retry-After``). Whatever part of that Prefect's (jittered) delay may not cover is waited here,
    on the runtime's clock, so that the next attempt never comes early.
    """
    try:
        await state.aresult()
    except ImsflowError as exc:
        if not exc.retryable:
            return False
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            extra = float(retry_after) - _shortest_delay(task, task_run.run_count - 1)
            if extra > 0:
                await runtime.current().sleep(extra)
        return True
    except Exception:
        return False
    return False


def transient_retries(retries: int = RETRIES) -> dict[str, Any]:
    """The task options of the one retry layer, for ``@task(name=..., **transient_retries())``."""
    return {
        "retries": retries,
        "retry_delay_seconds": BACKOFF(retries),
        "retry_jitter_factor": JITTER,
        "retry_condition_fn": retry_if_transient,
    }
