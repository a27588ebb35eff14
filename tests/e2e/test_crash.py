"""Crash safety: ``imsflow create`` killed with SIGKILL at the worst moments, then run again.

Everything is real processes: the local cloud (``python -m localcloud``) on a free port with a real clock,
and ``imsflow create`` with one ``PREFECT_HOME`` (result storage, locks) shared by the killed run and the
re-run, as on an operator's machine. Whatever the moment of the kill, the re-run ends with the one image of
the request, listed once in ``GET /v2/cloudimages``. The same holds per image kind: a ``system-and-data`` set
(two POSTs) and a ``full-ecs`` image (one POST of its own) killed while a job runs end, after the re-run, with
exactly one image of each member (:func:`test_sigkill_per_kind_then_rerun_makes_each_member_once`).

Both runs talk to one ``prefect server start`` shared by the module (``PREFECT_API_URL``) instead of each
starting a temporary server (seconds each). Only the API is shared: each test has its own cloud,
``PREFECT_HOME`` and key directory, and what imsflow keeps across a crash (the submission record, the token
cache, the locks) lives there, not in the server; ``imsflow create`` uses no global concurrency limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import (
    cloud_stats,
    cloud_token,
    local_cloud,
    prefect_server,
    private_images,
    process_env,
    until_stats,
)

pytestmark = pytest.mark.slow

WEB_1 = "6f1c2d7e-0000-4000-8000-000000000001"
DB_1 = "6f1c2d7e-0000-4000-8000-000000000002"  # running: imaged with --stop-if-running
PROJECT_ID = "0123456789abcdef0123456789abcdef"
PASSWORD = "crash-Passw0rd"
SEED: dict[str, Any] = {
    "domains": [
        {
            "name": "demo",
            "users": [{"name": "alice", "password": PASSWORD}],
            "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
        }
    ],
    "servers": [
        {"id": WEB_1, "name": "web-1", "project": "eu-de", "status": "SHUTOFF"},
        {"id": DB_1, "name": "db-1", "project": "eu-de", "status": "ACTIVE"},
    ],
    # A modest job: long enough to kill mid-poll (the first poll comes after IMSFLOW_POLL_INITIAL_DELAY, 1 s),
    # short enough for a quick re-run.
    "timing": {"image_job_seconds": 3, "job_init_seconds": 0.5},
}
IMSFLOW = [sys.executable, "-m", "cli"]


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as api:
        yield api


@pytest.fixture
def cloud_url() -> Iterator[str]:
    with local_cloud(SEED) as url:
        yield url


def _env(cloud_url: str, home: Path, prefect_api: str) -> dict[str, str]:
    return process_env(
        home,
        cloud_url,
        username="alice",
        password=PASSWORD,
        PREFECT_API_URL=prefect_api,
        # Never a temporary server: a run that missed PREFECT_API_URL fails instead of starting one.
        PREFECT_SERVER_EPHEMERAL_ENABLED="false",
        IMSFLOW_POLL_INITIAL_DELAY="1",
        IMSFLOW_POLL_MAX_INTERVAL="2",
    )


def _create(env: dict[str, str], name: str, instance_id: str = WEB_1, *options: str) -> subprocess.Popen[str]:
    # A session of its own: SIGKILL goes to the whole group, whatever the run started included.
    return subprocess.Popen(
        [*IMSFLOW, "create", "--instance-id", instance_id, "--name", name, *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _kill_when(proc: subprocess.Popen[str], url: str, ready: Callable[[dict[str, int]], bool]) -> None:
    until_stats(url, ready, timeout=90, proc=proc)  # after 90 s, killed anyway: the assertions say what
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def _token(url: str) -> str:
    return cloud_token(url, "alice", PASSWORD, PROJECT_ID)


def _images(url: str) -> list[dict[str, Any]]:
    return private_images(url, _token(url))


def _server(url: str, instance_id: str) -> dict[str, Any]:
    server: dict[str, Any] = httpx.get(
        f"{url}/v1/{PROJECT_ID}/cloudservers/{instance_id}", headers={"X-Auth-Token": _token(url)}, timeout=5
    ).json()["server"]
    return server


def _add_fault(url: str, **rule: Any) -> None:
    httpx.post(f"{url}/_local/faults", json=rule, timeout=5).raise_for_status()


def _during_get_token(url: str) -> Callable[[dict[str, int]], bool]:
    # The IAM login hangs while get-token holds its cache lock: a lock a dead process held must not block.
    _add_fault(url, kind="delay", operation="iam.create_token", seconds=60, first=1)
    return lambda stats: stats.get("faults.delay", 0) >= 1


def _before_submit(url: str) -> Callable[[dict[str, int]], bool]:
    # The reconcile call just before the POST hangs (a real-time delay): the kill lands before any submit.
    _add_fault(url, kind="delay", operation="ims.list_images", seconds=60, first=1)
    return lambda stats: stats.get("faults.delay", 0) >= 1


def _after_create_response(url: str) -> Callable[[dict[str, int]], bool]:
    return lambda stats: stats.get("ims.create_image", 0) >= 1


def _mid_poll(url: str) -> Callable[[dict[str, int]], bool]:
    return lambda stats: stats.get("ims.show_job", 0) >= 1


@pytest.mark.parametrize(
    ("moment", "submitted_by_killed_run"),
    [(_during_get_token, False), (_before_submit, False), (_after_create_response, True), (_mid_poll, True)],
    ids=["during-get-token", "before-submit", "after-create-response", "mid-poll"],
)
def test_sigkill_then_rerun_makes_exactly_one_image(
    prefect_api: str,
    cloud_url: str,
    tmp_path: Path,
    moment: Callable[[str], Callable[[dict[str, int]], bool]],
    submitted_by_killed_run: bool,
) -> None:
    env = _env(cloud_url, tmp_path, prefect_api)
    name = "web-1-crash"
    ready = moment(cloud_url)

    killed = _create(env, name)
    _kill_when(killed, cloud_url, ready)
    assert cloud_stats(cloud_url).get("ims.create_image", 0) == int(submitted_by_killed_run)
    httpx.delete(f"{cloud_url}/_local/faults", timeout=5)

    rerun = _create(env, name)
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err
    image_id = out.strip().splitlines()[-1]

    images = _images(cloud_url)
    assert [(i["id"], i["name"], i["status"]) for i in images] == [(image_id, name, "active")]
    assert cloud_stats(cloud_url)["ims.create_image"] == 1, (
        "the re-run must resume or adopt, never submit again"
    )


def test_sigkill_right_after_the_start_post_then_rerun_does_not_stop_again(
    prefect_api: str, cloud_url: str, tmp_path: Path
) -> None:
    """Issue 12, item 3: ``--stop-if-running`` on a running ECS, killed right after the start POST. The image
    is made and the start under way: the re-run must not stop the ECS once more (no needless power cycle of
    a production server), only see it running, and print no error."""
    env = _env(cloud_url, tmp_path, prefect_api)
    name = "db-1-crash"

    killed = _create(env, name, DB_1, "--stop-if-running")
    _kill_when(killed, cloud_url, lambda stats: stats.get("ecs.start_servers", 0) >= 1)
    stats = cloud_stats(cloud_url)
    assert (stats["ecs.stop_servers"], stats["ecs.start_servers"], stats["ims.create_image"]) == (1, 1, 1)

    # --verbose: Prefect's own log lines reach the console (a plain run shows only CRITICAL ones).
    rerun = _create(env, name, DB_1, "--stop-if-running", "--verbose")
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err
    image_id = out.strip().splitlines()[-1]

    stats = cloud_stats(cloud_url)
    assert stats["ecs.stop_servers"] == 1, "the re-run stopped the ECS again"
    assert stats["ecs.start_servers"] == 1
    assert stats["ims.create_image"] == 1
    assert [(i["id"], i["name"], i["status"]) for i in _images(cloud_url)] == [(image_id, name, "active")]
    server = _server(cloud_url, DB_1)
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    errors = [line for line in (out + err).splitlines() if "ERROR" in line]
    assert errors == [], "a normal re-run logs no error"


# ------------------------------------------------------------------------------------------ per image kind

UUID_LINE = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
VAULT = "3c2b1a09-0000-4000-8000-0000000000b1"
#: SEED with two data disks on each ECS, a CBR vault, and shorter jobs: every kill point below is a call
#: the cloud answered (a job just started), so a job only needs to outlast the 20 ms stats poll.
KINDS_SEED: dict[str, Any] = {
    **SEED,
    "servers": [{**server, "data_disks": 2} for server in SEED["servers"]],
    "vaults": [{"id": VAULT, "name": "server-backups", "project": "eu-de"}],
    "timing": {"image_job_seconds": 2, "job_init_seconds": 0.5},
}


def _reached(operation: str, count: int) -> Callable[[dict[str, int]], bool]:
    return lambda stats: stats.get(operation, 0) >= count


@pytest.mark.parametrize(
    ("instance_id", "options", "kills", "members"),
    [
        # Two kills in a row, each once a POST was answered. First the system POST: the system job runs and
        # its record is the only trace of it. The re-run resumes that job and submits the data request; it
        # is killed once that POST was answered, while the data job runs (the system image active). The
        # third run must resume the data job: neither request is submitted again.
        pytest.param(
            WEB_1,
            ["--kind", "system-and-data"],
            [("ims.create_image", 1), ("ims.create_image", 2)],
            3,
            id="system-and-data",
        ),
        # The whole-image POST answered (the job runs), of a running ECS, taken as it is.
        pytest.param(
            DB_1,
            ["--kind", "full-ecs", "--vault-id", VAULT],
            [("ims.create_whole_image", 1)],
            1,
            id="full-ecs",
        ),
    ],
)
def test_sigkill_per_kind_then_rerun_makes_each_member_once(
    prefect_api: str,
    tmp_path: Path,
    instance_id: str,
    options: list[str],
    kills: list[tuple[str, int]],
    members: int,
) -> None:
    """Issue 11: kill -9 of ``imsflow create --kind ...`` once a POST was answered (a job in flight), then a
    re-run: exactly one image per member (the system image and one per data disk, or the one full-ECS
    image), each POST once, and no power cycle (web-1 is stopped; a full-ECS image leaves db-1 running)."""
    whole = "full-ecs" in options
    post, other_post = "ims.create_image", "ims.create_whole_image"
    if whole:
        post, other_post = other_post, post
    name = "kind-crash"
    with local_cloud(KINDS_SEED) as url:
        env = _env(url, tmp_path, prefect_api)
        for operation, count in kills:
            killed = _create(env, name, instance_id, *options)
            _kill_when(killed, url, _reached(operation, count))
            assert cloud_stats(url).get(post, 0) == count

        rerun = _create(env, name, instance_id, *options)
        out, err = rerun.communicate(timeout=180)
        assert rerun.returncode == 0, err
        # One ID a line, the system image's first (after whatever else the run printed).
        image_ids = [line for line in out.splitlines() if UUID_LINE.fullmatch(line)]

        images = _images(url)
        stats = cloud_stats(url)
    expected = [name] if whole else [name, f"{name}-vdb", f"{name}-vdc"]
    assert sorted(i["name"] for i in images) == sorted(expected), "one image per member, none twice"
    assert len(images) == members
    assert {i["status"] for i in images} == {"active"}
    assert sorted(image_ids) == sorted(i["id"] for i in images)
    assert next(i["name"] for i in images if i["id"] == image_ids[0]) == name
    # Each request POSTed once in all: every re-run resumed what a killed run had submitted.
    assert stats.get(post, 0) == (1 if whole else 2)
    assert stats.get(other_post, 0) == 0
    assert stats.get("ecs.stop_servers", 0) == stats.get("ecs.start_servers", 0) == 0
