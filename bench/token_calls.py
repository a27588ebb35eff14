"""IAM token calls: N flow runs × 10 concurrent tasks needing a token. Baseline: each run logs in once."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import emit, imsflow_env, local_cloud_process, seed, stats


def main(runs: int, tasks: int = 10, at_once: int = 10) -> None:
    with local_cloud_process(seed(1, 5)) as url:
        os.environ.update(imsflow_env(url, PREFECT_HOME=tempfile.mkdtemp(prefix="imsflow-bench-home-")))
        from prefect import flow, task

        import runtime
        from runtime.auth import CredentialScope, login
        from tasks.token import fresh_token

        @task
        async def use_cached_token() -> str:
            token = await fresh_token(CredentialScope.from_settings(runtime.settings()))
            return token.project_id or ""

        @flow
        async def cached_run() -> None:
            await asyncio.gather(*(use_cached_token() for _ in range(tasks)))

        @flow
        async def baseline_run() -> None:
            # The usual hand-written flow: log in at the start of each run, share it with the run's tasks.
            await login(CredentialScope.from_settings(runtime.settings()))

        async def batch(make: object, n: int) -> float:
            started = time.monotonic()
            for first in range(0, n, at_once):
                await asyncio.gather(*(make() for _ in range(first, min(n, first + at_once))))  # type: ignore[operator]
            return time.monotonic() - started

        async def measure() -> dict[str, float]:
            before = stats(url)["iam.create_token"]
            base_wall = await batch(baseline_run, runs)
            middle = stats(url)["iam.create_token"]
            cached_wall = await batch(cached_run, runs)
            after = stats(url)["iam.create_token"]
            return {
                "baseline_calls": middle - before,
                "calls": after - middle,
                "baseline_wall": base_wall,
                "wall": cached_wall,
            }

        result = asyncio.run(measure())
    emit({"runs": runs, "tasks": tasks, "at_once": at_once, **result})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
