"""The API budget: slots drawn from the global rate limit in batches, requests paced locally (no Prefect)."""

from __future__ import annotations

import httpx

from runtime.budget import ApiBudget, BudgetedTransport, batch_for


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_paced_at_the_rate_with_a_small_burst_and_batched_acquisitions() -> None:
    time = FakeTime()
    taken: list[int] = []

    async def acquire(name: str, slots: int) -> None:
        taken.append(slots)

    budget = ApiBudget(rate=40, acquire=acquire, clock=time.clock, sleep=time.sleep)
    sent_at = []
    for _ in range(400):
        await budget.take()
        sent_at.append(time.now)
    # 400 requests at 40/s: ten seconds, less the burst allowance (a quarter second's worth).
    assert 9.5 <= time.now <= 10.0
    # No one-second window ever holds more than rate + burst requests.
    worst = max(sum(1 for t in sent_at if start <= t < start + 1) for start in sent_at)
    assert worst <= 40 + 10 + 1
    # One Prefect round trip per batch (80 slots), plus the refill started ahead of need.
    assert budget.batch == batch_for(40) == 80
    assert len(taken) <= 400 // 80 + 2
    assert sum(taken) >= 400


async def test_transport_spends_one_slot_per_request_and_outlives_clients() -> None:
    calls: list[str] = []

    async def acquire(name: str, slots: int) -> None:
        calls.append(name)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    budget = ApiBudget(rate=1000, name="imsflow-api", batch=5, acquire=acquire)
    transport = BudgetedTransport(httpx.MockTransport(answer), budget)
    for _ in range(3):  # a new client per task, as the tasks do; closing one must not close the shared pool
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as client:
            for _ in range(4):
                assert (await client.get("/x")).status_code == 200
    assert budget.requests == 12
    assert calls == ["imsflow-api"] * 3  # 12 requests, batches of 5
