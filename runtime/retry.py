"""The retry story of imsflow, in one place: what is retried, by whom, how often, and how long it waits.

1. **The client never retries.** One client call is one request (an expired token is replaced once, on the
   401, by ``imsflow.auth``): it raises, and the error says whether it is transient (``retryable``:
   throttling, 5xx, transport errors) and how long the cloud asked to wait (``retry_after``).
2. **Tasks retry calls that failed transiently**, and nothing else: every task that calls the cloud is
   declared ``@task(..., **transient_retries())``. A task that failed with a transient error runs again,
   up to :data:`RETRIES` times, after :func:`imsflow.polling.backoff_delay` (2, 4, 8, 16 s, stretched by up
   to half, and never less than the cloud's ``Retry-After``; ``IMSFLOW_RETRY_BACKOFF`` sets the first delay,
   2 s, and the others double it). A 4xx, a failed job, a bad request, a bug is never retried. Running a
   step again is safe because every step reconciles first (``tasks.image``: the job is resumed or the
   tagged image adopted, never submitted twice).
3. **Waiting tolerates transient errors in one helper**, ``imsflow.polling`` (:func:`~imsflow.polling.
   wait_for_job` for image and export jobs, :func:`~imsflow.polling.wait_until` for an ECS stop or start and
   for an image to turn active or go away): up to :data:`~imsflow.polling.TRANSIENT_TOLERANCE` in a row,
   with the same backoff (a job's status query backs off from the poll interval instead); the next one
   ends the wait. **A task is not retried for the error that ended a wait**
   (:func:`~imsflow.polling.tolerated_by_wait`): the wait already repeated that call as often as a task
   retry would have. Errors raised outside a wait (the stop request, the first look at the ECS) are
   retried as in 2.
4. **Flows do not retry.** Whatever reaches a flow is not transient, or was retried already by 2 or 3;
   repeating the whole run would multiply those retries and repeat a wrong password's login. A new run
   (or ``prefect flow-run retry``) is always safe: it resumes the request's job, and after a failed job of
   that same flow run it raises that failure again before touching the ECS (``flows/pipeline.py``).

Worst cases, for one call that keeps failing transiently (e.g. ``503``): ``RETRIES + 1 = 5`` calls in a row,
about 30-45 s of backoff (15 times ``IMSFLOW_RETRY_BACKOFF``, up to half more; or the cloud's ``Retry-After``
each time), then the run fails with that error.
That holds for a job's status query (``GET .../jobs/{job_id}``) in poll-job: 1 + 4 absorbed = 5 calls,
and poll-job is not retried for it; ``tests/flows/test_retry.py`` asserts it.

5. **Prefect's own client retries its server**, not imsflow: a 5xx or a broken connection to the Prefect API
   is sent again after 2, 4, 8, 16 s (jittered; ``PREFECT_CLIENT_MAX_RETRIES`` times). On a server on this
   machine (the temporary server ``imsflow`` commands start, or one on 127.0.0.1) those 503s are SQLite's
   "database is locked": two writes colliding (a fleet's lanes taking slots and ECS locks, the task-run
   recorder), an upgrade of a deferred read transaction, which SQLite's busy timeout does not cover, so the
   request fails at once and the next try a moment later goes through. Seconds of backoff there only stall
   the run (the flow tests sat 2 s, 4 s on them before they retried faster). :func:`local_server_backoff`
   (used by the CLI for those servers, and by the flow tests) retries them in tenths of a second, with more
   attempts and no longer in all than Prefect's own: a server that is gone fails the run no later than it
   would have, saying so.

The waits sleep through ``runtime``'s sleep, and so do the retries: Prefect is told to retry at once
(``retry_delay_seconds=0``) and :func:`retry_if_transient` waits the backoff itself before saying yes. With
the local cloud's clock installed (``runtime.use_runtime(sleep=..., clock=...)``), every wait is
virtual. For tests of your own flows without that, :func:`set_testing` makes retries immediate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from prefect.client.schemas.objects import State, TaskRun
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.tasks import Task

import runtime
from imsflow.errors import ImsflowError
from imsflow.polling import TRANSIENT_TOLERANCE, backoff_delay, retry_after_of, tolerated_by_wait

#: Task retries after a transient error: a call is made at most ``RETRIES + 1`` times in a row.
RETRIES = TRANSIENT_TOLERANCE


@dataclass(frozen=True)
class _Testing:
    attempts: int | None


_testing: _Testing | None = None


class _Restore(AbstractContextManager[None]):
    """What :func:`set_testing` returns: leaving the ``with`` block restores the mode before it."""

    def __init__(self, previous: _Testing | None) -> None:
        self._previous = previous

    def __exit__(self, *exc_info: object) -> None:
        global _testing
        _testing = self._previous


def set_testing(on: bool, *, attempts: int | None = None) -> _Restore:
    """Test mode for your own flows: task retries happen at once, with no backoff and no Retry-After wait.

    Process-wide, like ``stamina.set_testing``: call it in a fixture, or use it as a context manager
    (``with set_testing(True, attempts=1): ...``) to restore the previous mode on leaving. ``attempts``
    caps the attempts of each task run (``1``: no retries at all), else they stay as declared. What is
    retried does not change: transient errors only. Waits for jobs still sleep through ``runtime``'s
    sleep; replace it with ``use_runtime(sleep=..., clock=...)`` if they should not.
    """
    global _testing
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    previous = _testing
    _testing = _Testing(attempts) if on else None
    return _Restore(previous)


@runtime.on_reset
def _forget() -> None:
    global _testing
    _testing = None


def is_testing() -> bool:
    """Whether :func:`set_testing` switched the test mode on."""
    return _testing is not None


def _log(message: str, *args: object) -> None:
    try:
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
    except MissingContextError:
        logger = logging.getLogger(__name__)
    logger.info(message, *args)


async def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry throttling, 5xx and transport errors; never a 4xx, a failed job or a bad request.

    Nor the transient error that ended a wait (``imsflow.polling.tolerated_by_wait``): the wait repeated
    that call already. Before saying yes it waits the backoff (at least the cloud's ``Retry-After``) on the
    runtime's sleep; Prefect then starts the next attempt at once. Prefect asks only while retries are left.
    """
    try:
        await state.aresult()
    except ImsflowError as exc:
        if not exc.retryable or tolerated_by_wait(exc):
            return False
        attempt = task_run.run_count  # 1 after the first attempt failed
        if _testing is not None:
            return _testing.attempts is None or attempt < _testing.attempts
        delay = backoff_delay(attempt, retry_after_of(exc), base=runtime.settings().retry_backoff)
        _log(
            "%s is transient: attempt %d of %d in %.1f s",
            type(exc).__name__,
            attempt + 1,
            1 + task.retries,
            delay,
        )
        await runtime.current().sleep(delay)
        return True
    except Exception:
        return False
    return False


def transient_retries(retries: int = RETRIES) -> dict[str, Any]:
    """The task options of the retry layer, for ``@task(name=..., **transient_retries())``.

    The delay is ``0`` for Prefect on purpose: :func:`retry_if_transient` waits the backoff itself, on the
    runtime's clock (see the module).
    """
    return {
        "retries": retries,
        "retry_delay_seconds": 0,
        "retry_jitter_factor": None,
        "retry_condition_fn": retry_if_transient,
    }


#: The backoff of Prefect's client on a server of this machine: a tenth of its own (0.2, 0.4, 0.8 s, ...),
#: with more attempts, rides out the same contention. Eight tries wait about 51 s in all, Prefect's five
#: about 62 s: a local server restarting is still waited for, and one that is gone fails the run no later.
LOCAL_SERVER_BACKOFF_SCALE = 0.1
LOCAL_SERVER_MAX_RETRIES = 8
#: Where ``prefect.client.base`` computes its backoff's jitter (and so the backoff itself).
JITTER = "clamped_poisson_interval"


@contextmanager
def local_server_backoff() -> Iterator[None]:
    """Prefect's client retries a Prefect server on this machine in tenths of a second (see 5. above).

    Only the backoff of answers *without* ``Retry-After`` and of broken connections changes (a concurrency
    limit's 423 ``Retry-After`` is honoured as is). The client computes that backoff in one function it
    imports by name, ``clamped_poisson_interval`` (Prefect 3.9.1, which pyproject pins): scaled here for the
    block, restored after it.
    """
    import prefect.client.base as client_base
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
    from prefect.utilities.math import clamped_poisson_interval

    # The client module's own reference (it imports the function by name; not re-exported, hence vars()).
    names = vars(client_base)
    if names[JITTER] is not clamped_poisson_interval:  # scaled already (an enclosing block): not twice
        yield
        return

    def scaled(average_interval: float, clamping_factor: float = 0.3) -> float:
        return clamped_poisson_interval(average_interval * LOCAL_SERVER_BACKOFF_SCALE, clamping_factor)

    names[JITTER] = scaled
    try:
        retries = max(PREFECT_CLIENT_MAX_RETRIES.value(), LOCAL_SERVER_MAX_RETRIES)
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: retries}):
            yield
    finally:
        names[JITTER] = clamped_poisson_interval


__all__ = [
    "LOCAL_SERVER_MAX_RETRIES",
    "RETRIES",
    "is_testing",
    "local_server_backoff",
    "retry_if_transient",
    "set_testing",
    "transient_retries",
]
