"""Adaptive polling on a virtual clock: fewer status calls than a fixed 10 s schedule, quicker detection."""

from __future__ import annotations

import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from imsflow.errors import ImsflowError, JobFailedError, PermissionDeniedError, ServerError, ThrottledError
from imsflow.polling import (
    TRANSIENT_TOLERANCE,
    PollPolicy,
    backoff_delay,
    tolerated_by_wait,
    wait_for_job,
    wait_until,
)

FIXED_10S = PollPolicy(initial_delay=10, min_interval=10, max_interval=10, growth=1, jitter=0)


@dataclass
class FakeJob:
    job_id: str | None
    status: str
    percent: float | None
    error_code: str | None = None
    fail_reason: str | None = None


class VirtualJob:
    """A job that queues ``queued`` s, then runs ``seconds`` s with linear (or stepped) progress."""

    def __init__(self, seconds: float, queued: float = 1.0, stepped: bool = False, fail: bool = False):
        self.now = 0.0
        self.seconds, self.queued, self.stepped, self.fail = seconds, queued, stepped, fail
        self.calls = 0

    @property
    def end(self) -> float:
        return self.queued + self.seconds

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now

    async def fetch(self) -> FakeJob:
        self.calls += 1
        if self.now >= self.end:
            return FakeJob("j", "FAIL" if self.fail else "SUCCESS", 100, "IMS.0001" if self.fail else None)
        if self.now < self.queued:
            return FakeJob("j", "INIT", None)
        fraction = (self.now - self.queued) / self.seconds
        if self.stepped:
            fraction = int(fraction * 4) / 4
        return FakeJob("j", "RUNNING", round(fraction * 100, 1))


async def run(job: VirtualJob, policy: PollPolicy) -> tuple[int, float]:
    """Status calls made and detection delay (time from the job's end to the poll that saw it)."""
    await wait_for_job(
        job.fetch,
        job_id="j",
        timeout=10 * job.end + 600,
        policy=policy,
        clock=job.clock,
        sleep=job.sleep,
        percent_of=lambda j: j.percent,
    )
    return job.calls, job.now - job.end


@pytest.mark.parametrize("seconds", [30, 300, 1800])
async def test_fewer_calls_and_quicker_detection_than_fixed_10s(seconds: float) -> None:
    fixed_calls, fixed_delay = await run(VirtualJob(seconds), FIXED_10S)
    results = [
        await run(VirtualJob(seconds), PollPolicy(rng=random.Random(i), expected_seconds=seconds))
        for i in range(20)
    ]
    calls = statistics.median(c for c, _ in results)
    delay = statistics.median(d for _, d in results)
    assert calls < fixed_calls
    assert delay <= 3.0
    assert delay < fixed_delay or fixed_delay <= 3.0
    if seconds >= 300:
        assert calls <= 0.5 * fixed_calls


async def test_progress_rate_alone_finds_the_end_of_a_long_job() -> None:
    # No history: only process_percent tells how long the job will take.
    calls, delay = await run(VirtualJob(1800, queued=60), PollPolicy(rng=random.Random(1)))
    fixed_calls, _ = await run(VirtualJob(1800, queued=60), FIXED_10S)
    assert calls <= 0.4 * fixed_calls
    assert delay <= 3.0


async def test_first_poll_is_early_so_an_early_failure_shows_at_once() -> None:
    job = VirtualJob(0.5, queued=0.5, fail=True)
    with pytest.raises(JobFailedError):
        await run(job, PollPolicy(initial_delay=2, expected_seconds=1800))
    assert job.calls == 1
    assert job.now == 2


async def test_overdue_job_is_polled_soon_then_less_often() -> None:
    job = VirtualJob(600, queued=0)
    policy = PollPolicy(expected_seconds=60, jitter=0, max_interval=30)  # history says 60 s; it takes 600
    delays: list[float] = []
    real_sleep = job.sleep

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(seconds)

    job.sleep = sleep  # type: ignore[method-assign]
    await run(job, policy)
    assert all(d <= 30 for d in delays)
    assert max(delays) == 30  # backed off to the cap, not stuck at 1 s polls
    assert job.calls < 600 / 10


async def test_stepped_progress_still_converges() -> None:
    calls, delay = await run(VirtualJob(300, stepped=True), PollPolicy(rng=random.Random(2)))
    fixed_calls, _ = await run(VirtualJob(300, stepped=True), FIXED_10S)
    assert calls < fixed_calls
    assert delay <= 30


async def test_throttling_is_waited_out_with_retry_after() -> None:
    job = VirtualJob(20)
    answers = [ThrottledError(status=429, code="APIG.0308", message="slow down", url="u", retry_after=7)]
    inner = job.fetch

    async def fetch() -> FakeJob:
        if answers:
            raise answers.pop()
        return await inner()

    await wait_for_job(fetch, job_id="j", timeout=600, clock=job.clock, sleep=job.sleep)
    assert job.now >= job.end


def _server_error() -> ServerError:
    return ServerError(status=503, code="IMG.0061", message="busy", url="u")


async def test_a_wait_absorbs_a_bounded_run_of_transient_errors_then_ends_with_the_last() -> None:
    job = VirtualJob(20)
    calls = 0
    last: list[ServerError] = []

    async def fetch() -> FakeJob:
        nonlocal calls
        calls += 1
        last.append(_server_error())
        raise last[-1]

    with pytest.raises(ServerError) as raised:
        await wait_for_job(fetch, job_id="j", timeout=3600, clock=job.clock, sleep=job.sleep)
    assert calls == TRANSIENT_TOLERANCE + 1 == 5
    assert raised.value is last[-1]
    assert tolerated_by_wait(raised.value)  # so that no task retry repeats the wait
    assert not any(tolerated_by_wait(e) for e in last[:-1])


def _recording_sleep(job: VirtualJob) -> tuple[list[float], Callable[[float], Awaitable[None]]]:
    """The job's virtual sleep, and the list of what it was asked to sleep."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await job.sleep(seconds)

    return waits, sleep


def _passing_after(*errors: ImsflowError) -> Callable[[], Awaitable[bool]]:
    """A wait's check that raises ``errors`` in turn, then passes."""
    pending = list(errors)

    async def check() -> bool:
        if pending:
            raise pending.pop(0)
        return True

    return check


async def test_wait_until_absorbs_the_same_bounded_run_and_honours_retry_after() -> None:
    job = VirtualJob(20)
    waits, sleep = _recording_sleep(job)
    check = _passing_after(
        ThrottledError(status=429, code="APIG.0308", message="slow down", url="u", retry_after=40),
        _server_error(),
    )

    await wait_until(check, timeout=600, clock=job.clock, sleep=sleep)
    assert waits[0] >= 40  # Retry-After wins over the 2 s backoff
    assert 4 <= waits[1] < 6  # the second in a row: 4 s, stretched by up to half

    calls = 0

    async def failing() -> bool:
        nonlocal calls
        calls += 1
        raise _server_error()

    with pytest.raises(ServerError) as raised:
        await wait_until(failing, timeout=3600, clock=job.clock, sleep=job.sleep)
    assert calls == TRANSIENT_TOLERANCE + 1
    assert tolerated_by_wait(raised.value)


async def test_wait_until_backs_off_from_the_given_first_delay() -> None:
    job = VirtualJob(20)
    waits, sleep = _recording_sleep(job)
    check = _passing_after(_server_error(), _server_error())

    await wait_until(check, timeout=600, clock=job.clock, sleep=sleep, backoff=0.5)
    assert 0.5 <= waits[0] < 0.75
    assert 1 <= waits[1] < 1.5  # doubled, stretched by up to half


async def test_a_non_transient_error_ends_a_wait_at_once_and_unmarked() -> None:
    job = VirtualJob(20)
    calls = 0

    async def fetch() -> FakeJob:
        nonlocal calls
        calls += 1
        raise PermissionDeniedError(status=403, code="IMG.0026", message="no", url="u")

    with pytest.raises(PermissionDeniedError) as raised:
        await wait_for_job(fetch, job_id="j", timeout=600, clock=job.clock, sleep=job.sleep)
    assert calls == 1
    assert not tolerated_by_wait(raised.value)


def test_backoff_doubles_to_a_cap_jitters_upwards_and_yields_to_retry_after() -> None:
    rng = random.Random(3)
    for attempt, base in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (9, 30)]:
        delay = backoff_delay(attempt, rng=rng)
        assert base <= delay < base * 1.5
    assert backoff_delay(1, 45.0, rng=rng) == 45.0
    assert backoff_delay(4, 3.0, jitter=0) == 16.0
