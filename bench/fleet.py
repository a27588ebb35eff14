"""A fleet of N ECSs (job 10 s, IMS cap 40) in real time against ``python -m localcloud``.

Measured: wall time of the fleet flow against the ideal ceil(N/40) × 10 s, IAM token calls, peak RSS of
the process running the flow, and 429 answers (the local cloud enforces a request rate above the fleet's
budget; the budget must keep every request under it).

Then, in the same process and run, a fleet of N image sets (kind ``system-and-data``, two data disks per
ECS) on a cloud of its own, against the system-only fleet above as its baseline: per ECS two requests and
two jobs one after the other (the system image, then the data images; IMS refuses the second while the first
runs), so its ideal is twice the baseline's wall. Reported as ratios: set wall / system wall (ideal 2×),
POSTs per ECS (2), images per ECS (3), status calls per job against the baseline's, token calls, 429s.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import emit, imsflow_env, local_cloud_process, seed, stats

JOB_SECONDS = 10.0
CAP = 40
CLOUD_RPS = 100  # the local cloud's request-rate limit (HTTP 429 above it)
BUDGET_RPS = 80  # the fleet's budget: with its burst (a quarter second's worth) it stays under the limit
DATA_DISKS = 2  # per ECS of the set fleet: a set is the system image and one image per data disk


def _fleet(n: int, kind: str) -> tuple[float, Any, str, dict[str, int]]:
    """One fleet of ``n`` ECSs of image kind ``kind`` on a local cloud of its own: wall, result, final state,
    the cloud's call counts."""
    data = seed(n, JOB_SECONDS, limits={"max_running_image_jobs": CAP, "requests_per_second": CLOUD_RPS})
    if kind == "system-and-data":
        for server in data["servers"]:
            server["data_disks"] = DATA_DISKS
        data["limits"]["image_quota"] = max(50, 2 * (1 + DATA_DISKS) * n)
    with local_cloud_process(data) as url:
        # One PREFECT_HOME (and temporary server) for both fleets; IMSFLOW_* point at this fleet's cloud.
        os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="imsflow-bench-home-"))
        os.environ.update(imsflow_env(url, PREFECT_HOME=os.environ["PREFECT_HOME"]))
        from prefect import flow

        import runtime

        runtime.reset()  # the settings (and the clients, token) of the cloud before are cached

        from flows.fleet import FleetParams, FleetResult, create_images_for_fleet

        @flow
        async def warm_up() -> None:
            """Start Prefect's temporary server before the clock starts (the demo bench times that)."""

        async def measure() -> tuple[float, FleetResult, str]:
            await warm_up()
            params = FleetParams(
                tags=["fleet=bench"], max_concurrent=CAP, requests_per_second=BUDGET_RPS, kind=kind
            )
            started = time.monotonic()
            state = await create_images_for_fleet(params, return_state=True)
            wall = time.monotonic() - started
            result = await state.aresult(raise_on_failure=False)
            assert isinstance(result, FleetResult), result
            return wall, result, state.type.value

        wall, result, final = asyncio.run(measure())
        return wall, result, final, stats(url)


def _sets(n: int, baseline_wall: float, baseline_status_calls: int) -> dict[str, Any]:
    """The fleet of image sets, as ratios to the system-only fleet that ran just before it."""
    wall, result, final, counts = _fleet(n, "system-and-data")
    images = sum(1 + len(r.data_image_ids) for r in result.rows if r.image_id)
    requests = sum(v for k, v in counts.items() if not k.startswith("faults."))
    return {
        "ecs": n,
        "data_disks": DATA_DISKS,
        "state": final,
        "failed": len(result.failed),
        "errors": sorted({r.error or "" for r in result.failed})[:5],
        "wall": wall,
        "baseline_wall": baseline_wall,
        "ratio": wall / baseline_wall,
        "ideal_ratio": 2.0,  # two jobs per ECS, one after the other, under the same cap
        "token_calls": counts["iam.create_token"],
        "posts": counts.get("ims.create_image", 0),
        "posts_per_ecs": counts.get("ims.create_image", 0) / n,
        "images": images,
        "status_calls": counts.get("ims.show_job", 0),
        "status_calls_ratio": counts.get("ims.show_job", 0) / max(baseline_status_calls, 1),
        "requests": requests,
        "requests_per_second": requests / wall,
        "rate_limited_429": counts.get("faults.rate_limit", 0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # both fleets' peak
    }


def main(n: int, kinds: bool = True) -> None:
    wall, result, final, counts = _fleet(n, "system")
    ideal = math.ceil(n / CAP) * JOB_SECONDS
    jobs = sorted(r.job_seconds for r in result.rows)
    queued = sorted(r.queued_seconds for r in result.rows)
    lanes = sorted(r.total_seconds - r.queued_seconds - r.job_seconds for r in result.rows)
    requests = sum(v for k, v in counts.items() if not k.startswith("faults."))
    emit(
        {
            "ecs": n,
            "cap": CAP,
            "job_seconds": JOB_SECONDS,
            "state": final,
            "failed": len(result.failed),
            "errors": sorted({r.error or "" for r in result.failed})[:5],
            "wall": wall,
            "ideal": ideal,
            "ratio": wall / ideal,
            "cloud_rps": CLOUD_RPS,
            "budget_rps": BUDGET_RPS,
            "token_calls": counts["iam.create_token"],
            "images": counts["ims.create_image"],
            "status_calls": counts["ims.show_job"],
            "requests": requests,
            "requests_per_second": requests / wall,
            "rate_limited_429": counts.get("faults.rate_limit", 0),
            "job_seconds_p50_p90": [jobs[len(jobs) // 2], jobs[int(len(jobs) * 0.9)]] if jobs else [],
            "check_seconds_p50_p90": [lanes[len(lanes) // 2], lanes[int(len(lanes) * 0.9)]] if lanes else [],
            "queued_p50_max": [queued[len(queued) // 2], queued[-1]] if queued else [],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime
            + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
            "server_cpu_seconds": resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime,
            "sets": _sets(n, wall, counts["ims.show_job"]) if kinds else None,
        }
    )


if __name__ == "__main__":
    # `fleet.py N` runs both fleets; `fleet.py N system` only the system-only one.
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500, kinds=sys.argv[2:3] != ["system"])
