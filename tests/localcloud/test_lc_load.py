"""Load features: per-job duration distributions, progress profiles, request-rate limit, a 500-ECS fleet."""

from __future__ import annotations

import time
from typing import Any

from localcloud import LocalCloud, ManualClock, parse_seed

from .conftest import PROJECT, seeded, small_seed


def fleet(n: int, status: str = "SHUTOFF", **extra: Any) -> dict[str, Any]:
    return small_seed(
        servers=[
            {
                "id": f"00000000-0000-4000-8000-{i:012d}",
                "name": f"node-{i:03d}",
                "project": "eu-de",
                "status": status,
                "tags": [f"shard={i % 10}"],
            }
            for i in range(n)
        ],
        **extra,
    )


def job_seconds(cloud: LocalCloud) -> list[float]:
    out = []
    for job in cloud.ims.jobs.values():
        end = job.timeline.entered_at("SUCCESS")
        assert end is not None
        out.append((end - job.created_at).total_seconds() - cloud.seed.timing.job_init_seconds)
    return out


async def test_job_durations_from_a_seeded_distribution() -> None:
    data = fleet(20, timing={"image_job_seconds": {"mean": 10, "spread": 2}}, random_seed=7)
    runs = []
    for _ in range(2):
        async with seeded(data) as (cloud, client, auth):
            for i in range(20):
                r = await client.post(
                    "/v2/cloudimages/action",
                    headers=auth,
                    json={"name": f"i{i}", "instance_id": f"00000000-0000-4000-8000-{i:012d}"},
                )
                assert r.status_code == 200
            runs.append(job_seconds(cloud))
    assert all(8 <= s <= 12 for s in runs[0])
    assert len(set(runs[0])) > 10  # they differ from job to job
    assert runs[0] == runs[1]  # and the seed makes them reproducible


async def test_stepped_progress_profile() -> None:
    data = fleet(1, timing={"image_job_seconds": 8, "progress_profile": "stepped"})
    async with seeded(data) as (cloud, client, auth):
        r = await client.post(
            "/v2/cloudimages/action",
            headers=auth,
            json={"name": "i", "instance_id": "00000000-0000-4000-8000-000000000000"},
        )
        job_id = r.json()["job_id"]
        seen = []
        cloud.advance(1)
        for _ in range(8):
            body = (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).json()
            seen.append(body["entities"]["process_percent"])
            cloud.advance(1)
        assert seen == [0.0, 0.0, 25.0, 25.0, 50.0, 50.0, 75.0, 75.0]


async def test_request_rate_limit_answers_429_apig_0308() -> None:
    async with seeded(fleet(1, limits={"requests_per_second": 5})) as (cloud, client, auth):
        # The token request counted as one.
        codes = [(await client.get("/v1/cloudimages/quota", headers=auth)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 200, 429]
        r = await client.get("/v1/cloudimages/quota", headers=auth)
        assert r.status_code == 429
        assert r.json()["error_code"] == "APIG.0308"
        assert r.headers["Retry-After"] == "1"
        cloud.advance(1)
        assert (await client.get("/v1/cloudimages/quota", headers=auth)).status_code == 200
        assert cloud.stats()["faults.rate_limit"] == 2


async def test_a_500_ecs_fleet_stays_fast() -> None:
    n = 500
    data = fleet(
        n,
        status="ACTIVE",
        limits={"image_quota": 1000, "max_running_image_jobs": 1000},
        timing={"image_job_seconds": {"mean": 30, "spread": 10}},
    )
    started = time.perf_counter()
    async with seeded(data) as (cloud, client, auth):
        ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)]
        r = await client.post(
            f"/v1/{PROJECT}/cloudservers/action",
            headers=auth,
            json={"os-stop": {"type": "HARD", "servers": [{"id": i} for i in ids]}},
        )
        stop_job = r.json()["job_id"]
        cloud.advance(2)
        assert (await client.get(f"/v1/{PROJECT}/jobs/{stop_job}", headers=auth)).json()[
            "status"
        ] == "SUCCESS"
        page = (
            await client.get(
                f"/v1/{PROJECT}/cloudservers/detail",
                headers=auth,
                params={"status": "SHUTOFF", "limit": 1000, "tags": "shard=3"},
            )
        ).json()
        assert page["count"] == 50
        jobs = []
        for i, server_id in enumerate(ids):
            r = await client.post(
                "/v2/cloudimages/action", headers=auth, json={"name": f"n{i}", "instance_id": server_id}
            )
            assert r.status_code == 200, r.text
            jobs.append(r.json()["job_id"])
        for _ in range(3):  # three polling rounds over the whole fleet
            cloud.advance(15)
            for job_id in jobs:
                assert (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).status_code == 200
        statuses = {
            (await client.get(f"/v1/{PROJECT}/jobs/{j}", headers=auth)).json()["status"] for j in jobs
        }
        assert statuses == {"SUCCESS"}
        images = (
            await client.get("/v2/cloudimages", headers=auth, params={"__imagetype": "private"})
        ).json()["images"]
        assert len(images) == n
        assert {i["status"] for i in images} == {"active"}
        assert cloud.stats()["ims.show_job"] == 4 * n
    # Mostly HTTP overhead; the state itself must not be the bottleneck (generous bound for slow CI).
    assert time.perf_counter() - started < 20


def test_state_lookups_do_not_scan_the_fleet() -> None:
    cloud = LocalCloud(parse_seed(fleet(2000)), ManualClock())
    server_id = "00000000-0000-4000-8000-000000001999"
    started = time.perf_counter()
    for _ in range(2000):
        assert cloud.ims.image_job_running(server_id) is False
        assert cloud.ecs.find(PROJECT, server_id) is not None
        assert cloud.ims.running_image_jobs(PROJECT) == 0
        assert cloud.ims.private_image_count(PROJECT) == 0
    assert time.perf_counter() - started < 1.0
