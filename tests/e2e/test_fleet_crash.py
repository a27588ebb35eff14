"""A crash never blocks the next night: ``imsflow fleet`` killed with SIGKILL, its Prefect server too.

All real processes: the local cloud on a free port with a real clock, and ``imsflow fleet`` runs sharing one
``PREFECT_HOME``, as on an operator's machine. Two ways the Prefect side dies:

* the fleet's own **temporary server** dies with it (``kill -9`` of the process group), three times in a
  row (before any create, two creates in, five creates in); the next runs start new temporary servers on
  the same database;
* a **long-running server** is killed and started again in the middle of a fleet, and a fleet run on it is
  killed alone.

Whatever dies, the re-run of the same fleet and a new fleet (another date) complete without a hand laid on
them: every ECS imaged once per date, no wait for slots (each run may wait at most ``--slot-wait 2``
minutes), no Prefect ERROR line, and ``imsflow limits`` shows 0 held slots once no run is active.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import (
    IMSFLOW,
    ROOT,
    PrefectServer,
    cloud_stats,
    cloud_token,
    local_cloud,
    private_images,
    process_env,
    seed_prefect_home,
    until_stats,
)

pytestmark = pytest.mark.slow

PASSWORD = "fleet-Passw0rd"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
SERVERS = 8
LANES = 4
SEED: dict[str, Any] = {
    "domains": [
        {
            "name": "demo",
            "users": [{"name": "alice", "password": PASSWORD}],
            "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
        }
    ],
    "servers": [
        {
            "id": f"6f1c2d7e-0000-4000-8000-{i + 300:012d}",
            "name": f"node-{i}",
            "project": "eu-de",
            "status": "SHUTOFF",
            "tags": ["env=prod"],
        }
        for i in range(SERVERS)
    ],
    # Two waves of four jobs: long enough to kill a run between its creates, short enough to re-run.
    "timing": {"image_job_seconds": 4, "job_init_seconds": 0.5},
    "limits": {"image_quota": 100},
}


@pytest.fixture
def cloud_url() -> Iterator[str]:
    with local_cloud(SEED) as url:
        yield url


def _env(cloud_url: str, home: Path, **extra: str) -> dict[str, str]:
    return process_env(
        home,
        cloud_url,
        username="alice",
        password=PASSWORD,
        IMSFLOW_POLL_INITIAL_DELAY="1",
        IMSFLOW_POLL_MAX_INTERVAL="2",
        **extra,
    )


def _fleet(env: dict[str, str], day: str, *, verbose: bool = False) -> subprocess.Popen[str]:
    """``imsflow fleet``; ``verbose`` shows Prefect's log lines (without it the CLI shows no ERROR line)."""
    # A session of its own: SIGKILL goes to the whole group, a temporary Prefect server included.
    return subprocess.Popen(
        [
            *IMSFLOW,
            "fleet",
            "--tag",
            "env=prod",
            "--max-concurrent",
            str(LANES),
            "--date",
            day,
            "--slot-wait",
            "2",
            *(["--verbose"] if verbose else []),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _creates(url: str) -> int:
    return cloud_stats(url).get("ims.create_image", 0)


def _kill_when(proc: subprocess.Popen[str], url: str, operation: str, count: int) -> None:
    """SIGKILL the run's process group once the cloud has answered ``count`` ``operation`` calls in all."""
    if until_stats(url, lambda stats: stats.get(operation, 0) >= count, timeout=180, proc=proc) is None:
        pytest.fail(f"no {count} {operation} within 180 s")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _finish(proc: subprocess.Popen[str], what: str) -> tuple[str, float]:
    started = time.monotonic()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{out}"
    assert "Traceback" not in out, f"{what} printed a traceback:\n{out}"
    assert "| ERROR" not in out, f"{what} printed a Prefect ERROR line:\n{out}"
    return out, time.monotonic() - started


def _images_per_name(url: str) -> Counter[str]:
    images = private_images(url, cloud_token(url, "alice", PASSWORD, PROJECT_ID))
    return Counter(image["name"] for image in images)


def _assert_one_image_each(url: str, day: str) -> None:
    names = _images_per_name(url)
    mine = {name: n for name, n in names.items() if name.endswith(day.replace("-", ""))}
    assert mine == {f"node-{i}-{day.replace('-', '')}": 1 for i in range(SERVERS)}


def _limits(env: dict[str, str]) -> str:
    done = subprocess.run(
        [*IMSFLOW, "limits"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return " ".join(done.stdout.split())


def test_fleet_killed_three_times_with_its_temporary_server_then_rerun_and_a_new_fleet(
    cloud_url: str, tmp_path: Path
) -> None:
    env = _env(cloud_url, tmp_path)  # no PREFECT_API_URL: every run starts its own temporary server
    # ... on one database (PREFECT_HOME), migrated already: what is tested is a crash, not a first start.
    seed_prefect_home(tmp_path)

    # Slots taken, first ECS looked at, nothing submitted; then two jobs in flight and two lanes about to
    # submit; then the re-run adopted those and made three more.
    for operation, count in [("ecs.show_server", 1), ("ims.create_image", 2), ("ims.create_image", 5)]:
        _kill_when(_fleet(env, "2026-11-27"), cloud_url, operation, count)

    out, _ = _finish(_fleet(env, "2026-11-27", verbose=True), "the re-run")
    assert "of imsflow-ims-jobs held by no live run" in out, out
    assert "its process is gone" in out, out
    _assert_one_image_each(cloud_url, "2026-11-27")

    out, seconds = _finish(_fleet(env, "2026-11-28", verbose=True), "the next night's fleet")
    assert "waiting for an IMS job slot" not in out, out
    _assert_one_image_each(cloud_url, "2026-11-28")
    assert _creates(cloud_url) == 2 * SERVERS, "no image made twice"
    assert seconds < 120 + 60, "no wait longer than the bound (--slot-wait 2) plus the run itself"

    shown = _limits(env)
    assert f"imsflow-ims-jobs 0 of {LANES} IMS job slots held" in shown, shown


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    server = PrefectServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_long_running_server_restarted_mid_fleet_and_a_fleet_killed_on_it(
    cloud_url: str, tmp_path: Path, prefect_server: PrefectServer
) -> None:
    env = _env(cloud_url, tmp_path, PREFECT_API_URL=prefect_server.api)

    fleet = _fleet(env, "2026-11-27")
    if until_stats(cloud_url, lambda stats: stats.get("ims.create_image", 0) >= 2, timeout=180) is None:
        pytest.fail("two creates: not within 180 s")
    prefect_server.stop(signal.SIGKILL)  # mid-fleet: jobs in flight, slots held
    time.sleep(1)  # a real outage, however short: the fleet's calls to the server fail meanwhile
    prefect_server.start()
    out, _ = _finish(fleet, "the fleet whose server restarted")
    assert f"{SERVERS} ECSs, 0 failed" in out, out
    _assert_one_image_each(cloud_url, "2026-11-27")
    assert f"imsflow-ims-jobs 0 of {LANES} IMS job slots held" in _limits(env)

    killed = _fleet(env, "2026-11-28")
    _kill_when(killed, cloud_url, "ims.create_image", SERVERS + 2)  # the server lives on: slots stay held
    held = _limits(env)
    assert "its process is gone" in held, held

    out, _ = _finish(_fleet(env, "2026-11-28", verbose=True), "the re-run on the long-running server")
    assert "released 4 slot(s) of imsflow-ims-jobs held by no live run" in out, out
    _assert_one_image_each(cloud_url, "2026-11-28")
    assert _creates(cloud_url) == 2 * SERVERS
    assert f"imsflow-ims-jobs 0 of {LANES} IMS job slots held" in _limits(env)
