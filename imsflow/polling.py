"""Waiting for asynchronous cloud jobs without Prefect.

The clock and the sleep are injected, so tests drive a poll loop against the local cloud's clock and
never sleep. Polling is adaptive: it asks again when the job is *expected* to be done (from the job's
own ``process_percent`` when it reports one, else from how long similar jobs took), so a long job costs
few status calls and a finished job is noticed quickly.
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
    max_consecutive_errors: int = 8
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
    """Backoff after a transient error while polling, honouring the cloud's Retry-After."""
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int | float) and retry_after > 0:
        return float(retry_after)
    base: float = min(policy.min_interval * 2**attempt, policy.max_interval)
    return base * (1 + policy.jitter * policy.rng.random())


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
    the job keeps running in the cloud whether or not we can see it. Past ``timeout`` seconds the wait
    ends with ``JobTimeoutError`` carrying the last state seen.
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
            if not getattr(exc, "retryable", False) or errors >= policy.max_consecutive_errors:
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
) -> None:
    """Poll ``check`` every ``interval`` seconds until it is true, or raise ``TimeoutError``."""
    start = clock()
    while not await check():
        if clock() - start >= timeout:
            raise TimeoutError(f"gave up after {timeout:.0f} s")
        await sleep(interval)
