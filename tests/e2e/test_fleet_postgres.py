"""Scale-out topology end to end: Prefect server on PostgreSQL, a process work pool with two workers, and a
fleet split into chunks that run as sub-deployments (``run_deployment``), so both workers share one fleet.

Needs a PostgreSQL database for Prefect: ``POSTGRES_PREFECT_URL`` (``.ci/run`` creates one and sets it).
Everything else (Prefect server, local cloud, workers) is started here as processes on free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e.stack import free_port, process_env

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("POSTGRES_PREFECT_URL")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not PG_URL,
        reason="no PostgreSQL for Prefect: set POSTGRES_PREFECT_URL=postgresql+asyncpg://user:pw@host/db "
        "(.ci/run installs PostgreSQL and sets it)",
    ),
]

N_SERVERS, CHUNK = 12, 3
POOL = "imsflow-fleet-e2e"
PASSWORD = "fleet-e2e-Passw0rd"


def _seed() -> dict[str, Any]:
    return {
        "domains": [
            {
                "name": "demo",
                "users": [{"name": "fleet", "password": PASSWORD}],
                "projects": [{"id": "0123456789abcdef0123456789abcdef", "name": "eu-de"}],
            }
        ],
        "servers": [
            {
                "id": f"e2e00000-0000-4000-8000-{i:012d}",
                "name": f"pg-node-{i:02d}",
                "project": "eu-de",
                "status": "SHUTOFF",
                "tags": ["fleet=e2e"],
            }
            for i in range(N_SERVERS)
        ],
        "timing": {"image_job_seconds": 3, "job_init_seconds": 0.5},
        "limits": {"image_quota": 100, "max_running_image_jobs": 4},
    }


def _wait(url: str, what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what} not up after {timeout:.0f} s: {log.read_text()[-3000:]}")


@contextlib.contextmanager
def _processes(home: Path) -> Iterator[tuple[dict[str, str], str]]:
    """PG-backed Prefect server, local cloud, work pool with two workers; yields (env, cloud URL)."""
    procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
    api_port, cloud_port = free_port(), free_port()
    cloud_url = f"http://127.0.0.1:{cloud_port}"
    # One PREFECT_HOME and key directory for all: one token cache, one result store, one key (one host).
    env = process_env(
        home,
        cloud_url,
        username="fleet",
        password=PASSWORD,
        PREFECT_API_URL=f"http://127.0.0.1:{api_port}/api",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=PG_URL or "",
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE="100",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_LOGGING_SERVER_LEVEL="WARNING",
        PREFECT_WORKER_QUERY_SECONDS="2",
        IMSFLOW_POLL_INITIAL_DELAY="1",
        PYTHONPATH=str(ROOT),
    )
    prefect = [str(Path(sys.executable).parent / "prefect")]

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (home / f"{name}.log").open("wb")
        proc = subprocess.Popen(list(args), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        return proc

    seed = home / "seed.json"
    seed.write_text(json.dumps(_seed()))
    try:
        server = start("server", *prefect, "server", "start", "--host", "127.0.0.1", "--port", str(api_port))
        cloud = start(
            "cloud", sys.executable, "-m", "localcloud", "--port", str(cloud_port), "--seed", str(seed)
        )
        _wait(f"{cloud_url}/_local/stats", "local cloud", cloud, home / "cloud.log")
        _wait(f"http://127.0.0.1:{api_port}/api/health", "Prefect server", server, home / "server.log")
        subprocess.run(
            [*prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        for name in ("w1", "w2"):
            # --limit: without it the first worker to poll takes every ready run (postgres-notes §3).
            start(name, *prefect, "worker", "start", "--pool", POOL, "--name", name, "--limit", "2")
        yield env, cloud_url
    finally:
        for proc, log in reversed(procs):
            # A worker needs a second SIGTERM to stop (postgres-notes §5.3).
            for _ in range(2):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


DRIVER = """
import asyncio, json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from flows.fleet import FleetParams, FleetResult, create_images_for_fleet

async def main():
    source = await create_images_for_fleet.from_source(
        source=%(root)r, entrypoint="flows/fleet.py:create_images_for_fleet"
    )
    deployment_id = await source.deploy(name="chunk", work_pool_name=%(pool)r, ignore_warnings=True)
    params = FleetParams(tags=["fleet=e2e"], max_concurrent=4, requests_per_second=200,
                         chunk_deployment="create-images-for-fleet/chunk", chunk_size=%(chunk)d)
    state = await create_images_for_fleet(params, return_state=True)
    result = await state.aresult(raise_on_failure=False)
    async with get_client() as client:
        # Only this run's chunks: the database may hold runs of earlier test sessions.
        parent = state.state_details.flow_run_id
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent]))
        )
        workers = sorted({
            r.labels.get("prefect.worker.name") for r in runs
            if r.deployment_id == deployment_id and r.labels.get("prefect.worker.name")
        })
    print("RESULT " + json.dumps({
        "state": state.type.value, "message": state.message,
        "rows": [r.model_dump(mode="json") for r in result.rows] if isinstance(result, FleetResult) else None,
        "workers": workers, "chunks": len(runs),
    }))

asyncio.run(main())
"""


def test_fleet_shared_by_two_workers_on_postgres() -> None:
    with tempfile.TemporaryDirectory(prefix="imsflow-pg-e2e-") as tmp, _processes(Path(tmp)) as (env, cloud):
        code = DRIVER % {"root": str(ROOT), "pool": POOL, "chunk": CHUNK}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, f"driver failed ({done.returncode}): {done.stderr[-4000:]}"
        out = json.loads(lines[-1].removeprefix("RESULT "))
        stats = httpx.get(f"{cloud}/_local/stats").json()

    assert out["state"] == "COMPLETED", out["message"]
    rows = out["rows"]
    assert len(rows) == N_SERVERS
    assert {r["outcome"] for r in rows} == {"submitted"}
    assert len({r["image_id"] for r in rows}) == N_SERVERS
    assert stats["ims.create_image"] == N_SERVERS  # each ECS exactly once across all chunk processes
    assert stats["iam.create_token"] == 1  # one token for parent and every chunk process
    assert out["chunks"] == N_SERVERS // CHUNK  # sub-flow runs of this fleet run
    assert out["workers"] == ["w1", "w2"], "both workers must take chunks of the one fleet"
