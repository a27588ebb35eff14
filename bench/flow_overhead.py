"""Wall time of one image (job of 20 s) through the Prefect flow vs a bare httpx script, same cloud, same calls.

Both poll with the same adaptive schedule (imsflow.polling), so the difference is what the orchestration
costs: task runs, result records, artifacts, state reports. Prefect's temporary server is warmed up first
(its start-up is the demo benchmark's subject); runs alternate so that load drifts hit both.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx

from bench.common import PASSWORD, PROJECT_ID, emit, imsflow_env, local_cloud_process, seed, server_id

JOB_SECONDS = 20.0


async def bare(url: str, instance_id: str, name: str) -> float:
    from imsflow.polling import PollPolicy, wait_for_job

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        auth = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": "bench", "password": PASSWORD, "domain": {"name": "bench"}}
                    },
                },
                "scope": {"project": {"name": "eu-de"}},
            }
        }
        r = await http.post("/v3/auth/tokens", json=auth)
        r.raise_for_status()
        headers = {"X-Auth-Token": r.headers["X-Subject-Token"]}
        r = await http.get(f"/v1/{PROJECT_ID}/cloudservers/{instance_id}", headers=headers)
        assert r.json()["server"]["status"] == "SHUTOFF"
        r = await http.get("/v2/cloudimages", params={"tag": f"imsflow-request.{name}"}, headers=headers)
        r.raise_for_status()
        r = await http.post(
            "/v2/cloudimages/action", json={"name": name, "instance_id": instance_id}, headers=headers
        )
        job_id = r.json()["job_id"]

        class Job:
            def __init__(self, body: dict) -> None:  # type: ignore[type-arg]
                self.job_id, self.status = job_id, body["status"]
                self.error_code, self.fail_reason = body.get("error_code"), body.get("fail_reason")
                self.entities = body.get("entities") or {}

        async def fetch() -> Job:
            r = await http.get(f"/v1/{PROJECT_ID}/jobs/{job_id}", headers=headers)
            r.raise_for_status()
            return Job(r.json())

        job = await wait_for_job(
            fetch,
            job_id=job_id,
            timeout=600,
            policy=PollPolicy(),
            percent_of=lambda j: j.entities.get("process_percent"),
        )
        r = await http.get(f"/v2/images/{job.entities['image_id']}", headers=headers)
        assert r.json()["status"] == "active"
    return time.monotonic() - started


def main(repeats: int) -> None:
    with local_cloud_process(seed(2 * repeats + 1, JOB_SECONDS)) as url:
        os.environ.update(imsflow_env(url, PREFECT_HOME=tempfile.mkdtemp(prefix="imsflow-bench-home-")))
        from flows.create_image import CreateImageParams, create_image_from_ecs

        async def flow_once(i: int) -> float:
            started = time.monotonic()
            await create_image_from_ecs(CreateImageParams(instance_id=server_id(i), name=f"flow-{i}"))
            return time.monotonic() - started

        async def measure() -> dict[str, object]:
            warm = await flow_once(0)  # starts Prefect's temporary server, fetches and caches the token
            flows, bares = [], []
            for r in range(repeats):
                bares.append(await bare(url, server_id(1 + 2 * r), f"bare-{r}"))
                flows.append(await flow_once(2 + 2 * r))
            return {"warmup": warm, "flow": flows, "bare": bares}

        out = asyncio.run(measure())
    flows, bares = out["flow"], out["bare"]
    assert isinstance(flows, list)
    assert isinstance(bares, list)
    emit(
        {
            "job_seconds": JOB_SECONDS,
            "repeats": repeats,
            "flow_wall": statistics.median(flows),
            "bare_wall": statistics.median(bares),
            "ratio": statistics.median(flows) / statistics.median(bares),
            "warmup_wall": out["warmup"],
            "flows": flows,
            "bares": bares,
        }
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
