"""Waiting for asynchronous cloud jobs without Prefect.

The clock and the sleep are injected, so tests drive a poll loop against the local cloud's clock and
never sleep. Polling is adaptive: it asks again when the job is *expected* to be done (from the job's
own ``process_percent`` when it reports one, else from how long similar jobs took), so a long job costs
few status calls and a finished job is noticed quickly.

This is the one place where waiting tolerates transient errors (throttling, 5xx, transport): both
:func:`wait_for_job` and :func:`wait_until` absorb up to :data:`TRANSIENT_TOLERANCE` of them in a row, each
after :func:`backoff_delay` (at least the cloud's ``Retry-After``); the next one ends the wait with that
error, marked so that :func:`tolerated_by_wait` is true for it and no task retry repeats what the wait already
did (``runtime.retry`` tells the whole retry story).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from imsflow.errors import ImsflowError, JobFailedError, JobTimeoutError

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAIL"})

#: Transient errors in a row that a wait absorbs; the next one ends it. A call is thus made at most
#: ``TRANSIENT_TOLERANCE + 1`` times in a row while it keeps failing: as often as a task with
#: ``runtime.retry.RETRIES`` retries runs.
TRANSIENT_TOLERANCE = 4
#: :func:`backoff_delay`: 2, 4, 8, 16, 30, 30 ... seconds, stretched by up to half (upwards only).
BACKOFF_BASE = 2.0
BACKOFF_CAP = 30.0
BACKOFF_JITTER = 0.5

#: The attribute that marks the error that ended a wait. On the error itself, not in a registry of objects:
#: it survives the pickling Prefect does to task failures (``ImsflowError.__reduce__`` keeps ``__dict__``).
_ENDED_WAIT = "imsflow_ended_wait"


def backoff_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    jitter: float = BACKOFF_JITTER,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after the ``attempt``-th transient failure in a row (1-based) of the same call.

    ``base * 2 ** (attempt - 1)``, capped at ``cap``, times a random factor in ``[1, 1 + jitter)``: callers
    spread out, and none comes back before its backoff. Never less than the cloud's ``Retry-After``.
    """
    delay: float = min(base * 2.0 ** max(attempt - 1, 0), cap)
    delay *= 1 + jitter * (rng.random() if rng is not None else random.random())
    if retry_after is not None and retry_after > delay:
        return float(retry_after)
    return delay


def retry_after_of(error: BaseException) -> float | None:
    """The seconds the cloud asked us to wait (``Retry-After``), if it said."""
    value = getattr(error, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def tolerated_by_wait(error: BaseException) -> bool:
    """True for the transient error that ended a wait: the wait already repeated its call enough."""
    return getattr(error, _ENDED_WAIT, False) is True


def _give_up(error: ImsflowError, what: str, tolerance: int) -> None:
    """Mark ``error`` as the one that ended a wait after ``tolerance`` absorbed ones (see the module)."""
    setattr(error, _ENDED_WAIT, True)
    error.add_note(
        f"imsflow: transient error number {tolerance + 1} in a row while waiting for {what}; "
        f"the wait absorbed {tolerance}, so this one ends it and is not retried again"
    )


class JobLike(Protocol):
    """What the poller needs from an IMS or ECS job."""

    @property
    def job_id(self) -> str | None: ...

    @property
    def status(self) -> str: ...

    @property
    def error_code(self) -> str | None: ...

    @property
    def fail_reason(self) -> str | None: ...


J = TypeVar("J", bound=JobLike)
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass
class PollPolicy:
    """How often to ask.

    ``expected_seconds`` is what a job of this kind usually takes; the fleet flow learns it from jobs
    that already finished. ``min_interval`` bounds how fast we hammer the API near the end of a job.
    """

    initial_delay: float = 2.0
    min_interval: float = 1.0
    max_interval: float = 30.0
    growth: float = 1.5
    jitter: float = 0.1
    expected_seconds: float | None = None
    #: Transient errors in a row absorbed while waiting (:data:`TRANSIENT_TOLERANCE`).
    max_consecutive_errors: int = TRANSIENT_TOLERANCE
    rng: random.Random = field(default_factory=random.Random)

    def schedule(self) -> Schedule:
        return Schedule(self)


class Schedule:
    """The delays of one wait, learned from what the job reports as it goes.

    The next poll is aimed at the moment the job is expected to end:

    * from the progress *rate* once two polls reported ``process_percent``; the rate is measured from the
      first reading that showed progress, so the time the job queued before running does not count, and
      the longer the span the less a rounded or stepped percentage matters;
    * else from ``expected_seconds`` (how long earlier jobs of this kind took);
    * else by a growing interval from ``initial_delay``.

    A job that is overdue by its estimate is polled again soon and then less and less often, and every
    delay is capped by ``max_interval`` (a stalled estimate must not hide a finished job for long).
    """

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self.previous: float | None = None
        # (elapsed, percent) of the first reading that showed progress
        self.anchor: tuple[float, float] | None = None
        self.overdue: float | None = None  # the last delay used while past the estimate

    def _remaining(self, elapsed: float, percent: float | None) -> float | None:
        if percent is not None and 0 < percent < 100:
            if self.anchor is None:
                self.anchor = (elapsed, percent)
            else:
                since, start = self.anchor
                if percent > start and elapsed > since:
                    rate = (percent - start) / (elapsed - since)
                    return (100 - percent) / rate
        if self.policy.expected_seconds is not None:
            return self.policy.expected_seconds - elapsed
        return None

    def next_delay(self, elapsed: float, percent: float | None) -> float:
        """Seconds until the next status call."""
        policy = self.policy
        remaining = self._remaining(elapsed, percent)
        if remaining is not None and remaining > 0:
            delay = remaining
            self.overdue = None
        elif remaining is not None:
            # Past the estimate: the job is late, not lost. Look again soon, then back off.
            self.overdue = policy.min_interval if self.overdue is None else self.overdue * policy.growth
            delay = self.overdue
        elif self.previous is None:
            delay = policy.initial_delay
        else:
            delay = self.previous * policy.growth
        delay = min(max(delay, policy.min_interval), policy.max_interval)
        self.previous = delay
        # Jitter only upwards: a fleet of pollers spreads out, and no poll lands before its estimate.
        return delay * (1 + policy.jitter * policy.rng.random())


def _request_id(job: object) -> str | None:
    # The client's job models carry the request ID of the answer they were read from; other JobLikes may not.
    value = getattr(job, "request_id", None)
    return value if isinstance(value, str) else None


def transient_delay(error: ImsflowError, attempt: int, policy: PollPolicy) -> float:
    """Backoff after the ``attempt``-th transient error in a row while polling, at least the Retry-After."""
    return backoff_delay(
        attempt,
        retry_after_of(error),
        base=2 * policy.min_interval,
        cap=policy.max_interval,
        jitter=policy.jitter,
        rng=policy.rng,
    )


async def wait_for_job(
    fetch: Callable[[], Awaitable[J]],
    *,
    job_id: str,
    timeout: float,
    policy: PollPolicy | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    on_update: Callable[[J, float], Awaitable[None]] | None = None,
    percent_of: Callable[[J], float | None] = lambda _job: None,
) -> J:
    """Poll ``fetch`` until the job is SUCCESS (returned) or FAIL (``JobFailedError``).

    A run of transient errors (throttling, 5xx, transport) is waited out rather than ending the wait:
    the job keeps running in the cloud whether or not we can see it. Up to ``policy.max_consecutive_errors``
    in a row are absorbed; the next one is raised, marked (:func:`tolerated_by_wait`). Past ``timeout``
    seconds the wait ends with ``JobTimeoutError`` carrying the last state seen.
    """
    policy = policy or PollPolicy()
    start = clock()
    last: J | None = None
    schedule = policy.schedule()
    errors = 0
    # The first look comes early: a job can fail validation inside the cloud within seconds.
    await sleep(min(policy.initial_delay, timeout))
    while True:
        elapsed = clock() - start
        try:
            job = await fetch()
        except ImsflowError as exc:
            if not exc.retryable:
                raise
            if errors >= policy.max_consecutive_errors:
                _give_up(exc, f"job {job_id}", errors)
                raise
            errors += 1
            wait = transient_delay(exc, errors, policy)
        else:
            errors = 0
            last = job
            if on_update is not None:
                await on_update(job, elapsed)
            if job.status == "SUCCESS":
                return job
            if job.status == "FAIL":
                raise JobFailedError(
                    job_id=job_id,
                    error_code=job.error_code,
                    fail_reason=job.fail_reason,
                    request_id=_request_id(job),
                )
            wait = schedule.next_delay(elapsed, percent_of(job))
        remaining = timeout - (clock() - start)
        if remaining <= 0:
            raise JobTimeoutError(
                job_id=job_id,
                last_status=last.status if last is not None else None,
                waited_seconds=clock() - start,
                request_id=_request_id(last) if last is not None else None,
            )
        await sleep(min(wait, remaining))


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 1.0,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    what: str = "a condition",
    tolerance: int = TRANSIENT_TOLERANCE,
    backoff: float = BACKOFF_BASE,
    rng: random.Random | None = None,
) -> None:
    """Poll ``check`` every ``interval`` seconds until it is true, or raise ``TimeoutError``.

    A transient error raised by ``check`` is absorbed like in :func:`wait_for_job`: up to ``tolerance`` in a
    row, each after :func:`backoff_delay` from ``backoff`` seconds; the next one is raised, marked
    (:func:`tolerated_by_wait`).
    ``what`` names what is waited for in that error's note.
    """
    start = clock()
    errors = 0
    while True:
        try:
            if await check():
                return
        except ImsflowError as exc:
            if not exc.retryable:
                raise
            if errors >= tolerance:
                _give_up(exc, what, errors)
                raise
            errors += 1
            wait = backoff_delay(errors, retry_after_of(exc), base=backoff, rng=rng)
        else:
            errors = 0
            wait = interval
        if clock() - start >= timeout:
            raise TimeoutError(f"gave up after {timeout:.0f} s")
        await sleep(wait)
