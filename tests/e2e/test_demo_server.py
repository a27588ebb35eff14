"""``imsflow demo`` and its background Prefect server as real processes: the first demo starts the server and
leaves it running, the second reuses it (no temporary server could even start) and links to its run; a server
killed leaves a stale record and the next command starts a new one; ``imsflow ui --stop`` stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli import background
from tests.e2e.stack import IMSFLOW, ROOT, prefect_home, seed_prefect_home

pytestmark = pytest.mark.slow

LINK = re.compile(
    r"^see the run in the Prefect UI: (http://127\.0\.0\.1:\d+)/runs/flow-run/([0-9a-f-]{36})$", re.MULTILINE
)


@pytest.fixture
def home() -> Iterator[Path]:
    # Removed at the end: a server a failed test left behind sees its record go, and stops.
    with tempfile.TemporaryDirectory(prefix="imsflow-demo-server-") as tmp:
        home = Path(tmp)
        # Migrated already: what is tested is the server's reuse and replacement (a demo's first start on a
        # fresh machine, migrations included, is test_wheel's).
        seed_prefect_home(home)
        try:
            yield home
        finally:
            stop = [*IMSFLOW, "ui", "--stop"]
            subprocess.run(stop, env=env(home), cwd=ROOT, capture_output=True, timeout=60, check=False)


def env(home: Path, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMSFLOW_"))}
    out.update(PREFECT_HOME=str(prefect_home(home)), XDG_CONFIG_HOME=str(home / "config"), **extra)
    return out


def imsflow(home: Path, *args: str, **extra: str) -> str:
    done = subprocess.run(
        [*IMSFLOW, *args], cwd=home, env=env(home, **extra), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


def run_in_ui(base: str, run_id: str) -> str:
    state: str = httpx.get(f"{base}/api/flow_runs/{run_id}", timeout=30).json()["state_type"]
    return state


def gone(pid: int, within: float = 30) -> bool:
    deadline = time.monotonic() + within
    while background.ours(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_demo_leaves_a_server_the_next_demo_reuses(home: Path) -> None:
    first = imsflow(home, "demo")
    assert "Prefect server started in the background at http://127.0.0.1:" in first
    found = LINK.search(first)
    assert found, first
    base, run_id = found.groups()
    record = background.read_record(home / "prefect")
    assert record is not None
    assert record.url == base
    assert background.ours(record.pid)
    assert run_in_ui(base, run_id) == "COMPLETED"
    assert httpx.get(f"{base}/", timeout=30).status_code == 200  # the UI is served too

    # No temporary server could start: the run must go to the background server.
    second = imsflow(home, "demo", PREFECT_SERVER_EPHEMERAL_ENABLED="false")
    assert "started in the background" not in second
    found = LINK.search(second)
    assert found, second
    assert found.group(1) == base
    assert found.group(2) != run_id
    assert run_in_ui(base, found.group(2)) == "COMPLETED"
    assert background.read_record(home / "prefect") == record

    stopped = imsflow(home, "ui", "--stop")
    assert stopped.strip() == f"stopped the background Prefect server at {base} (pid {record.pid})"
    assert not background.ours(record.pid)
    assert background.read_record(home / "prefect") is None
    assert imsflow(home, "ui", "--stop").strip() == "no background Prefect server is running"


def test_a_dead_server_is_replaced(home: Path) -> None:
    started = imsflow(home, "ui")
    pattern = r"Prefect UI at http://127\.0\.0\.1:\d+ \(started in the background, pid \d+\)\n"
    assert re.fullmatch(pattern, started), started
    record = background.read_record(home / "prefect")
    assert record is not None
    running = f"Prefect UI at {record.url} (running in the background, pid {record.pid})"
    assert imsflow(home, "ui").strip() == running

    os.kill(record.pid, signal.SIGKILL)
    assert gone(record.pid)
    assert background.read_record(home / "prefect") == record  # stale: nobody removed it
    restarted = imsflow(home, "ui")
    assert "started in the background" in restarted
    fresh = background.read_record(home / "prefect")
    assert fresh is not None
    assert fresh.pid != record.pid
    assert background.find(home / "prefect") == fresh
