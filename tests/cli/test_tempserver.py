"""The temporary Prefect server a command starts when no ``PREFECT_API_URL`` is set (``cli.tempserver``)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cli.tempserver import NotStarted, TemporaryServer
from tests.e2e.stack import ROOT
from tests.prefect_home import seed_database


def _process(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_server_that_exits_says_its_exit_code() -> None:
    server = TemporaryServer(_process("raise SystemExit(3)"), port=9)
    with pytest.raises(NotStarted) as raised:
        server.wait(timeout=60)
    assert (raised.value.code, str(raised.value)) == (3, "exited with code 3")


def test_a_silent_server_times_out_by_the_clock() -> None:
    server = TemporaryServer(_process("import time; time.sleep(60)"), port=9)
    ticks = itertools.count(step=10.0)  # each look at the clock: 10 s later
    try:
        with pytest.raises(NotStarted) as raised:
            server.wait(timeout=30, clock=lambda: next(ticks))
        assert (raised.value.code, raised.value.timeout) == (None, 30)
    finally:
        server.stop()
    assert server.process.returncode is not None


@pytest.mark.slow
def test_the_command_starts_a_server_without_loading_prefects_server_code(tmp_path: Path) -> None:
    """The real thing, in a process of its own as a command runs it: the server answers at the URL Prefect's
    settings now name, and ``prefect.server`` was never imported here (2.7 s of CPU that Prefect's own
    temporary server costs the command). On a migrated database: a first start's migrations are the
    README's."""
    script = textwrap.dedent(
        """
        import contextlib, sys
        from cli.flowrun import start_prefect_server, wait_for_server
        from prefect.settings import PREFECT_API_URL
        with contextlib.ExitStack() as stack:
            wait_for_server(start_prefect_server(stack))
            from cli.background import api_healthy
            print(api_healthy(PREFECT_API_URL.value()), PREFECT_API_URL.value())
            print(sorted(m for m in sys.modules if m.startswith("prefect.server")))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMSFLOW_"))}
    env.update(PREFECT_HOME=str(tmp_path), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    seed_database(tmp_path / "prefect.db")  # Prefect's default database in PREFECT_HOME
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    healthy, url = done.stdout.splitlines()[0].split()
    assert healthy == "True", done.stdout
    assert url.startswith("http://127.0.0.1:"), done.stdout
    assert done.stdout.splitlines()[1] == "[]", done.stdout
    assert "Traceback" not in done.stderr, done.stderr
