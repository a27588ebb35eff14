"""Status calls and detection delay per image job, adaptive vs a fixed 10 s schedule (virtual time).

The in-process local cloud runs on a ManualClock; the poller's sleep advances it, so a 30-minute job takes
milliseconds. Each job's duration is drawn from mean ± 10 %. The adaptive poller is fed the median duration
of the jobs before it (as the fleet flow does); the first job of each size runs cold.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx

from bench.common import PASSWORD, emit, seed, server_id
from imsflow.client import CloudClient
from imsflow.models import CreateImageFromEcsRequest, ImsJob
from imsflow.polling import PollPolicy, wait_for_job
from imsflow.settings import ImsflowSettings
from localcloud import LocalCloud, ManualClock, Seed

FIXED = PollPolicy(initial_delay=10, min_interval=10, max_interval=10, growth=1, jitter=0)
URL = "http://127.0.0.1:8780"


def percent(job: ImsJob) -> float | None:
    value = job.entities.process_percent if job.entities is not None else None
    return float(value) if value is not None else None


async def one_size(seconds: float, jobs: int) -> dict[str, float]:
    data = seed(
        jobs * 2, seconds, timing={"image_job_seconds": {"mean": seconds - 1, "spread": seconds / 10}}
    )
    clock = ManualClock(datetime.now(UTC))
    cloud = LocalCloud(seed=Seed.model_validate(data), clock=clock)
    settings = ImsflowSettings(
        _env_file=None,
        profile="local",
        iam_url=URL,
        ecs_url=URL,
        ims_url=URL,
        domain="bench",
        username="bench",
        password=PASSWORD,
    )

    async def sleep(s: float) -> None:
        clock.advance(s)

    def now() -> float:
        return clock.now().timestamp()

    transport = httpx.ASGITransport(app=cloud.app)
    assert settings.password is not None
    async with CloudClient.from_settings(settings, transport=transport) as login:
        token = await login.iam.create_token(
            domain="bench", username="bench", password=settings.password, project_name="eu-de"
        )
    out: dict[str, list[float]] = {"fixed_calls": [], "fixed_delay": [], "calls": [], "delay": []}
    history: list[float] = []
    rng = random.Random(7)
    async with CloudClient.from_settings(settings, token=token, transport=transport) as client:
        client.project_id = token.project_id
        for i in range(jobs * 2):
            adaptive = i % 2 == 1  # alternate, so both schedules see the same duration distribution
            job_id = await client.ims.create_image_from_ecs(
                CreateImageFromEcsRequest(name=f"img-{i}", instance_id=server_id(i))
            )
            started = now()
            before = cloud.stats()["ims.show_job"]
            policy = (
                PollPolicy(expected_seconds=statistics.median(history) if history else None, rng=rng)
                if adaptive
                else FIXED
            )

            async def fetch(job_id: str = job_id) -> ImsJob:
                return await client.ims.get_job(job_id)

            await wait_for_job(
                fetch,
                job_id=job_id,
                timeout=10 * seconds,
                policy=policy,
                clock=now,
                sleep=sleep,
                percent_of=percent,
            )
            job = cloud.ims.jobs[job_id]
            end = job.timeline.entered_at("SUCCESS")
            assert end is not None
            delay = now() - end.timestamp()
            calls = cloud.stats()["ims.show_job"] - before
            history.append(end.timestamp() - started)
            out["calls" if adaptive else "fixed_calls"].append(calls)
            out["delay" if adaptive else "fixed_delay"].append(delay)
    return {k: statistics.mean(v) if "calls" in k else statistics.median(v) for k, v in out.items()}


def main(jobs: int) -> None:
    results = {}
    for label, seconds in (("30 s", 30), ("5 min", 300), ("30 min", 1800)):
        results[label] = asyncio.run(one_size(seconds, jobs))
    emit({"jobs_per_size": jobs, "sizes": results})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
