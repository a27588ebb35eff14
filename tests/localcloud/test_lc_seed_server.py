"""Seeds (YAML and JSON), the clock and lifecycle helpers, and the real uvicorn server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pydantic
import pytest
import yaml

from localcloud import DEMO_SEED_PATH, LocalCloud, ManualClock, SystemClock, load_seed
from localcloud.lifecycle import Lifecycle, progress_percent
from localcloud.server import is_loopback, start_in_thread

from .conftest import PROJECT, password_auth, small_seed

SEED = small_seed(
    servers=[
        {
            "id": "6f1c2d7e-0000-4000-8000-000000000001",
            "name": "web-1",
            "project": "eu-de",
            "status": "SHUTOFF",
            "tags": ["env=prod"],
        }
    ],
    images=[
        {
            "id": "00000000-0000-4000-8000-000000000001",
            "name": "old",
            "project": "eu-de",
            "created_at": "2025-01-01T00:00:00Z",
            "instance_id": "6f1c2d7e-0000-4000-8000-000000000001",
        }
    ],
    buckets=["exports"],
    timing={"image_job_seconds": 7, "stop_seconds": 3},
    limits={"image_quota": 9},
)


def test_demo_seed_matches_the_brief() -> None:
    seed = load_seed(DEMO_SEED_PATH)
    [domain] = seed.domains
    assert domain.name == "demo"
    assert (domain.users[0].name, domain.users[0].password) == ("demo", "demo-password")
    assert (domain.projects[0].id, domain.projects[0].name) == (PROJECT, "eu-de")
    servers = {s.name: s for s in seed.servers}
    assert servers["web-1"].status == "SHUTOFF"
    assert servers["db-1"].status == "ACTIVE"
    assert any("backup=nightly" in s.tags for s in seed.servers)
    assert seed.timing.image_job_seconds == 5
    assert seed.timing.stop_seconds == seed.timing.start_seconds == 2
    assert LocalCloud().seed.servers == seed.servers  # no seed -> the demo seed
    assert isinstance(LocalCloud().clock, SystemClock)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_seed_files_load_as_yaml_or_json(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"seed{suffix}"
    path.write_text(json.dumps(SEED) if suffix == ".json" else yaml.safe_dump(SEED))
    seed = load_seed(path)
    assert seed.timing.image_job_seconds == 7
    assert seed.limits.image_quota == 9
    cloud = LocalCloud(seed, ManualClock())
    assert (
        cloud.ims.images["00000000-0000-4000-8000-000000000001"].instance_id
        == "6f1c2d7e-0000-4000-8000-000000000001"
    )
    assert cloud.ecs.servers["6f1c2d7e-0000-4000-8000-000000000001"].status == "SHUTOFF"
    assert cloud.obs == {"exports": {}}


def test_bad_seeds_fail_loudly(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown project"):
        LocalCloud(
            load_seed(_write(tmp_path, small_seed(servers=[{"id": "x", "name": "x", "project": "mars"}])))
        )
    with pytest.raises(pydantic.ValidationError):
        load_seed(_write(tmp_path, {"domain": []}))  # a typo in a key


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_manual_clock_and_lifecycles() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = ManualClock(start)
    clock.advance(1.5)
    assert clock.now() == start + timedelta(seconds=1.5)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    life = Lifecycle.of(("INIT", 1), ("RUNNING", 4), ("SUCCESS", None))
    assert life.at(start, start).name == "INIT"
    assert life.at(start, start + timedelta(seconds=1)).name == "RUNNING"
    pos = life.at(start, start + timedelta(seconds=3))
    assert (pos.name, pos.fraction) == ("RUNNING", 0.5)
    assert life.at(start, start + timedelta(days=9)).name == "SUCCESS"
    assert life.entered_at(start, "SUCCESS") == start + timedelta(seconds=5)
    stuck = Lifecycle.of(("INIT", 1), ("RUNNING", None), ("SUCCESS", None))
    assert stuck.at(start, start + timedelta(days=9)).name == "RUNNING"
    assert stuck.entered_at(start, "SUCCESS") is None
    assert progress_percent(0.6) == 60.0
    assert progress_percent(0.6, "stepped") == 50.0


def test_reset_restores_the_seed(cloud: LocalCloud) -> None:
    cloud.ims.images.clear()
    cloud.count("ims.show_job")
    cloud.reset()
    assert len(cloud.ims.images) == 2
    assert cloud.stats()["ims.show_job"] == 0


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")


def test_real_server_in_a_thread() -> None:
    cloud = LocalCloud(clock=ManualClock())
    handle = start_in_thread(cloud, host="127.0.0.1", port=0)
    try:
        assert handle.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=handle.url, timeout=5) as c:
            r = c.post("/v3/auth/tokens", json=password_auth())
            assert r.status_code == 201
            auth = {"X-Auth-Token": r.headers["X-Subject-Token"]}
            assert c.get(f"/v1/{PROJECT}/cloudservers/detail", headers=auth).json()["count"] == 5
            assert c.post("/_local/clock/advance", json={"seconds": 10}).status_code == 200
            assert c.get("/_local/stats").json()["ecs.list_servers"] == 1
    finally:
        handle.stop()


def test_local_endpoints_refuse_non_loopback_clients(cloud: LocalCloud) -> None:
    async def run() -> int:
        transport = httpx.ASGITransport(app=cloud.app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return (await c.get("/_local/stats")).status_code

    import asyncio

    assert asyncio.run(run()) == 403


def test_module_cli_help() -> None:
    # The test session runs from a scratch directory; point the child at the checkout.
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "localcloud", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    ).stdout
    assert "--seed" in out
    assert "127.0.0.1" in out


def test_non_loopback_bind_warns_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    from localcloud.server import warn_if_exposed

    warn_if_exposed("127.0.0.1")
    assert capsys.readouterr().err == ""
    warn_if_exposed("192.0.2.10")  # only printed, nothing is bound
    assert "NOT a loopback address" in capsys.readouterr().err


def test_python_m_localcloud_serves(tmp_path: Path) -> None:
    seed_path = tmp_path / "seed.json"
    seed_path.write_text(json.dumps(SEED))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "localcloud", "--port", "0", "--seed", str(seed_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        listening = proc.stdout.readline()
        assert "listening on" in listening
        assert f"seed {seed_path}" in listening
        url = listening.split("listening on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        r = httpx.post(f"{url}/v3/auth/tokens", json=password_auth("u", "p", "d"), timeout=5)
        assert r.status_code == 201
    finally:
        proc.terminate()
        proc.wait(timeout=10)
