"""A fleet of N ECSs (job 10 s, IMS cap 40) in real time against ``python -m localcloud``.

Measured: wall time of the fleet flow against the ideal ceil(N/40) × 10 s, IAM token calls, peak RSS of
the process running the flow, and 429 answers (the local cloud enforces a request rate above the fleet's
budget; the budget must keep every request under it).
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import emit, imsflow_env, local_cloud_process, seed, stats

JOB_SECONDS = 10.0
CAP = 40
CLOUD_RPS = 100  # the local cloud's request-rate limit (HTTP 429 above it)
BUDGET_RPS = 80  # the fleet's budget: with its burst (a quarter second's worth) it stays under the limit


def main(n: int) -> None:
    data = seed(n, JOB_SECONDS, limits={"max_running_image_jobs": CAP, "requests_per_second": CLOUD_RPS})
    with local_cloud_process(data) as url:
        os.environ.update(imsflow_env(url, PREFECT_HOME=tempfile.mkdtemp(prefix="imsflow-bench-home-")))
        from prefect import flow

        from flows.fleet import FleetParams, FleetResult, create_images_for_fleet

        @flow
        async def warm_up() -> None:
            """Start Prefect's temporary server before the clock starts (the demo bench times that)."""

        async def measure() -> tuple[float, FleetResult, str]:
            await warm_up()
            params = FleetParams(tags=["fleet=bench"], max_concurrent=CAP, requests_per_second=BUDGET_RPS)
            started = time.monotonic()
            state = await create_images_for_fleet(params, return_state=True)
            wall = time.monotonic() - started
            result = await state.aresult(raise_on_failure=False)
            assert isinstance(result, FleetResult), result
            return wall, result, state.type.value

        wall, result, final = asyncio.run(measure())
        counts = stats(url)
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
        }
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
