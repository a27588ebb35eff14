"""Fleet-wide limits: IMS's concurrent-job cap and the API request-rate budget, as Prefect global limits.

Both are Prefect *global* concurrency limits, so every flow run that shares a fleet, on any machine that
talks to the same Prefect server, counts against the same numbers:

* ``imsflow-ims-jobs`` (a concurrency limit): one slot per image job, held from submission until the job
  ends. IMS refuses more running jobs than its cap with ``IMG.0060``.
* ``imsflow-api`` (a rate limit, slots decaying at the budget's rate): one slot per API request.

Every acquisition is ``strict=True``: a missing limit is an error, never an unthrottled run, and
:func:`ensure_limits` creates them first.

The rate budget is drawn from Prefect in *batches* and paced locally (:class:`ApiBudget`): Prefect
serialises acquisitions per process and each is a database write (measured at 2.4 s each on a loaded
SQLite server during a 20-ECS fleet), so one round trip per cloud request would make the Prefect server the
fleet's bottleneck.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

JOBS_LIMIT = "imsflow-ims-jobs"
API_LIMIT = "imsflow-api"
#: API slots taken from Prefect per round trip.
BUDGET_BATCH = 5


async def _ensure(client: PrefectClient, name: str, limit: int, decay: float) -> str:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        found = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        try:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
            )
            return "created"
        except ObjectAlreadyExists:
            # Another flow run of the same fleet created it a moment ago.
            found = await client.read_global_concurrency_limit_by_name(name)
    if found.limit == limit and found.slot_decay_per_second == decay and found.active:
        return "kept"
    # The parameters win: the limit is whatever the fleet was started with (chunks pass the same values).
    await client.update_global_concurrency_limit(
        name, GlobalConcurrencyLimitUpdate(limit=limit, slot_decay_per_second=decay, active=True)
    )
    return "updated"


async def ensure_limits(
    *,
    max_concurrent_jobs: int,
    requests_per_second: float,
    jobs_limit: str = JOBS_LIMIT,
    api_limit: str = API_LIMIT,
) -> dict[str, str]:
    """Create the two global limits when missing (or set them to these values); say what was done."""
    from prefect.client.orchestration import get_client

    # Capacity: one batch (else a batch could never be granted). Bursts to the cloud are bounded by the
    # local pacing in ApiBudget, not by this capacity.
    capacity = batch_for(requests_per_second)
    async with get_client() as client:
        return {
            jobs_limit: await _ensure(client, jobs_limit, max_concurrent_jobs, 0.0),
            api_limit: await _ensure(client, api_limit, capacity, float(requests_per_second)),
        }


async def _prefect_rate_limit(name: str, slots: int) -> None:
    from prefect.concurrency.asyncio import rate_limit

    await rate_limit(name, occupy=slots, strict=True)


def batch_for(requests_per_second: float) -> int:
    """Slots per Prefect round trip: two seconds' worth, so one round trip in flight keeps up even when a
    busy (SQLite) Prefect server takes seconds to answer a write."""
    return max(BUDGET_BATCH, min(1000, math.ceil(2 * requests_per_second)))


class ApiBudget:
    """Process-local front of the global rate limit: paces requests, spends slots taken from Prefect.

    Two layers, because a Prefect acquisition is a database write that a loaded server answers in
    seconds, and this process's acquisitions are serialised:

    * slots come from the global limit in batches, refilled in the background before the reserve runs
      out, so requests rarely wait for a round trip;
    * requests are paced locally at ``rate`` with a small burst (a GCRA), so a batch taken at once is
      not sent at once: the cloud sees at most about ``rate + burst`` requests in any second.
    """

    def __init__(
        self,
        rate: float,
        name: str = API_LIMIT,
        batch: int | None = None,
        acquire: Callable[[str, int], Awaitable[None]] = _prefect_rate_limit,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.name = name
        self.batch = batch or batch_for(rate)
        self.burst = max(1.0, rate / 4)
        self._acquire = acquire
        self._clock = clock
        self._sleep = sleep
        self._reserve = 0
        self._refill: asyncio.Task[None] | None = None
        self._tat = 0.0  # GCRA: theoretical arrival time of the next request
        self._pace = asyncio.Lock()
        self.requests = 0
        self.acquisitions = 0

    async def _take_batch(self) -> None:
        await self._acquire(self.name, self.batch)
        self.acquisitions += 1
        self._reserve += self.batch

    def _ensure_refill(self) -> asyncio.Task[None]:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.ensure_future(self._take_batch())
        return self._refill

    async def take(self) -> None:
        async with self._pace:
            while self._reserve == 0:
                refill = self._ensure_refill()
                await refill
                refill.result()  # a failed acquisition (e.g. the limit was deleted) fails the request
            self._reserve -= 1
            if self._reserve < self.batch // 2:
                self._ensure_refill()  # top up in the background
            now = self._clock()
            interval = 1.0 / self.rate
            self._tat = max(self._tat, now)
            wait = self._tat - now - self.burst * interval
            self._tat += interval
            if wait > 0:
                await self._sleep(wait)
            self.requests += 1

    async def aclose(self) -> None:
        if self._refill is not None and not self._refill.done():
            self._refill.cancel()


class BudgetedTransport(httpx.AsyncBaseTransport):
    """Spends one budget slot per request, then sends it through the shared inner transport.

    One instance serves every client of a fleet run: the inner transport's connection pool is shared
    too, so hundreds of short-lived task clients reuse connections instead of opening their own.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, budget: ApiBudget) -> None:
        self.inner = inner
        self.budget = budget

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.budget.take()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        # Each task's client closes its transport on exit; the shared one lives as long as the fleet run.
        return None

    async def close_inner(self) -> None:
        await self.inner.aclose()


__all__ = [
    "API_LIMIT",
    "BUDGET_BATCH",
    "JOBS_LIMIT",
    "ApiBudget",
    "BudgetedTransport",
    "batch_for",
    "ensure_limits",
]
