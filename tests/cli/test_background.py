"""The background Prefect server (cli/background.py) and ``imsflow demo``/``imsflow ui`` on it, with
stand-ins: a server found alive or stale, stopped, failing to start, idle; the demo reusing one.
tests/e2e/test_demo_server.py runs the real processes."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import background
from cli.background import LastRequest, Record, ServerError, Starting
from cli.main import app

runner = CliRunner()
#: A process the checks take for our server (its command line names the module) that serves nothing.
LOOKALIKE = f"import time  # {background.MARK}\ntime.sleep(600)"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "prefect"
    home.mkdir()
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    return home


@pytest.fixture
def lookalike() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", LOOKALIKE])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """``_spawn`` replaced: the homes a new server would have been started for."""
    homes: list[Path] = []

    def spawn(home: Path) -> Starting:
        homes.append(home)
        return Starting(Record(pid=1, url="http://127.0.0.1:9", home=str(home), started=0.0), None, True)

    monkeypatch.setattr(background, "_spawn", spawn)
    return homes


def record(home: Path, pid: int, url: str = "http://127.0.0.1:9") -> Record:
    written = Record(pid=pid, url=url, home=str(home), started=time.time())
    background.write_record(home, written)
    return written


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_live_server_is_reused_not_started_again(
    home: Path, lookalike: subprocess.Popen[bytes], spawned: list[Path]
) -> None:
    running = record(home, lookalike.pid)
    starting = background.find_or_start()
    assert (starting.record, starting.started_now, spawned) == (running, False, [])


@pytest.mark.parametrize("pid", ["dead", "not ours"])
def test_a_stale_record_means_a_new_server(home: Path, spawned: list[Path], pid: str) -> None:
    import os

    record(home, dead_pid() if pid == "dead" else os.getpid())  # pytest runs, but it is not our server
    assert background.find() is None
    starting = background.find_or_start()
    assert (starting.started_now, spawned) == (True, [home])


def test_no_record_means_a_new_server(home: Path, spawned: list[Path]) -> None:
    assert background.read_record(home) is None
    assert background.find_or_start().started_now
    assert spawned == [home]


def test_find_needs_the_api_to_answer(
    home: Path, lookalike: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    running = record(home, lookalike.pid)
    assert background.find() is None  # nothing listens at its URL
    monkeypatch.setattr(background, "healthy", lambda url, timeout=2.0: url == running.url)
    assert background.find() == running


def test_stop_ends_the_server_and_removes_its_record(home: Path, lookalike: subprocess.Popen[bytes]) -> None:
    running = record(home, lookalike.pid)
    result = runner.invoke(app, ["ui", "--stop"])
    assert result.exit_code == 0, result.output
    expected = f"stopped the background Prefect server at {running.url} (pid {running.pid})"
    assert result.output.strip() == expected
    assert lookalike.wait(timeout=10) != 0  # terminated
    assert background.read_record(home) is None
    again = runner.invoke(app, ["ui", "--stop"])
    assert (again.exit_code, again.output.strip()) == (0, "no background Prefect server is running")


def test_stop_leaves_a_process_that_is_not_ours_alone(home: Path) -> None:
    import os

    record(home, os.getpid())
    assert background.stop() is not None  # the record goes; pytest itself is still here to check
    assert background.read_record(home) is None


def test_a_server_that_exits_while_starting_is_one_line(home: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", f"# {background.MARK}\nprint('sqlite3.OperationalError: disk I/O error')"],
        stdout=(home / background.LOG_NAME).open("wb"),
    )
    starting = Starting(record(home, process.pid), process, True)
    process.wait()
    with pytest.raises(ServerError) as failed:
        starting.wait(timeout=60)
    assert str(failed.value) == (
        "the background Prefect server exited before it answered: sqlite3.OperationalError: disk I/O error"
    )
    assert str(home / background.LOG_NAME) in (failed.value.hint or "")


def test_a_server_that_does_not_answer_in_time(home: Path, lookalike: subprocess.Popen[bytes]) -> None:
    ticks = itertools.count(step=10.0)  # each look at the clock: 10 s later
    starting = Starting(record(home, lookalike.pid), None, False)
    with pytest.raises(ServerError, match=r"did not answer within 30 s \(is the machine busy\?\)"):
        starting.wait(timeout=30, clock=lambda: next(ticks))


def test_a_failed_start_is_one_line_from_the_demo(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_server(self: Starting, timeout: float = 0, clock: Any = None) -> Record:
        raise ServerError("the background Prefect server exited before it answered: boom", hint="see the log")

    monkeypatch.setattr(background, "find_or_start", lambda: Starting(record(home, 1), None, True))
    monkeypatch.setattr(Starting, "wait", no_server)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1
    assert not isinstance(result.exception, ServerError)
    assert result.output.strip().splitlines()[-2:] == [
        "error: the background Prefect server exited before it answered: boom",
        "hint: see the log",
    ]


def test_the_server_stops_when_its_record_goes_or_it_is_idle(home: Path) -> None:
    now = [1000.0]
    last = LastRequest(app=None, clock=lambda: now[0])  # type: ignore[arg-type]
    record(home, 42)
    assert background.should_stop(home, 42, last, limit=600) is None
    now[0] += 601
    assert background.should_stop(home, 42, last, limit=600) == "no request for 10 minutes"
    assert background.should_stop(home, 42, last, limit=0) is None  # 0: never idle
    record(home, 43)  # another server took over the home
    assert background.should_stop(home, 42, last, limit=0) == "its record was removed"
    background.record_path(home).unlink()
    assert background.should_stop(home, 43, last, limit=0) == "its record was removed"


async def test_a_request_resets_the_idle_clock() -> None:
    now = [0.0]
    calls: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    last = LastRequest(inner, clock=lambda: now[0])
    now[0] = 50.0
    await last({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert last.at == 0.0
    await last({"type": "http"}, None, None)  # type: ignore[arg-type]
    assert (last.at, calls) == (50.0, ["lifespan", "http"])


def test_the_users_own_api_url_wins(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert background.configured_api_url() is None
    (home / "profiles.toml").write_text(
        'active = "local"\n[profiles.local]\nPREFECT_API_URL = "http://127.0.0.1:4200/api"\n[profiles.other]\n'
    )
    assert background.configured_api_url() == "http://127.0.0.1:4200/api"
    monkeypatch.setenv("PREFECT_PROFILE", "other")
    assert background.configured_api_url() is None
    monkeypatch.setenv("PREFECT_API_URL", "http://example.test/api")
    assert background.configured_api_url() == "http://example.test/api"


def test_the_demo_runs_on_the_running_server_and_links_to_its_run(
    home: Path, lookalike: subprocess.Popen[bytes], spawned: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second demo: the server is found (not spawned), no temporary server starts, the flow runs with the
    server's API URL, and the last lines link to the run in its UI."""
    from prefect.settings import PREFECT_API_URL

    from cli.flowrun import ShellFlow
    from cli.tempserver import TemporaryServer

    running = record(home, lookalike.pid, url="http://127.0.0.1:4321")
    monkeypatch.setattr(background, "healthy", lambda url, timeout=2.0: url == running.url)
    temporary: list[object] = []
    start = classmethod(lambda cls, settings_env=None: temporary.append(cls))
    monkeypatch.setattr(TemporaryServer, "start", start)
    seen: list[str | None] = []

    class Result:
        image_id = "914bbda7-e86c-46be-9fdb-4d2cfdf122e1"
        name = "web-1-demo"

    def run(self: ShellFlow, flow: Any, *args: Any, **kwargs: Any) -> Result:
        seen.append(PREFECT_API_URL.value())
        self.flow_run_id = "0891584d-d561-433e-ab6c-c0ede78931ba"
        return Result()

    monkeypatch.setattr(ShellFlow, "run", run)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert (seen, temporary, spawned) == (["http://127.0.0.1:4321/api"], [], [])
    assert "started in the background" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[-3] == f"image {Result.image_id} (web-1-demo) is active"
    assert lines[-2] == "see the run in the Prefect UI: http://127.0.0.1:4321/runs/flow-run/" + (
        "0891584d-d561-433e-ab6c-c0ede78931ba"
    )
    assert lines[-1].startswith("done in ")
