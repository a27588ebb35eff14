"""Running a flow from the shell: Prefect's temporary server gets time to start on a busy machine, and when it
still does not come up the command says so in one line, with what to do, and no traceback."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.flowrun import (
    PREFECT_START_FAILURE,
    STARTUP_TIMEOUT_SECONDS,
    ShellFlow,
    flow_from_shell,
    startup_timeout,
)
from cli.main import app
from cli.tempserver import NotStarted, TemporaryServer
from tests.e2e.stack import IMSFLOW

runner = CliRunner()
IMAGE = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def server_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """No ``PREFECT_API_URL``: commands start the temporary server; here a fake one that never comes up."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    timeouts: list[float] = []

    class Silent:
        api_url = "http://127.0.0.1:9/api"

        def wait(self, timeout: float) -> None:
            timeouts.append(timeout)
            raise NotStarted(timeout, None)

    monkeypatch.setattr(TemporaryServer, "start", classmethod(lambda cls, settings_env=None: Silent()))
    with temporary_settings(updates={PREFECT_API_URL: None}):
        yield timeouts


def test_the_startup_timeout_is_generous_unless_the_user_set_one() -> None:
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    assert startup_timeout() == STARTUP_TIMEOUT_SECONDS == 90
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 7}):
        assert startup_timeout() == 7


@pytest.mark.parametrize(
    "command",
    [
        ["delete", IMAGE],
        ["export", IMAGE, "--bucket-url", "bucket:file.qcow2", "--format", "qcow2"],
        ["prune", "--keep", "2"],
        ["create", "--instance-id", "6f1c2d7e-0000-4000-8000-000000000001", "--name", "web-1-x"],
        ["fleet", "--tag", "backup=nightly"],
        ["demo", "--temporary-server"],
    ],
    ids=lambda command: command[0],
)
def test_a_server_that_does_not_start_is_one_line(
    command: list[str], server_starts: list[float], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    assert server_starts == [90]
    assert not isinstance(result.exception, RuntimeError), result.exception
    lines = result.output.strip().splitlines()
    assert lines[-1] == (
        "error: Prefect's temporary server did not start within 90 s (is the machine busy?): start one with "
        "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
        "or raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    )


def test_a_server_prefect_started_itself_is_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    with pytest.raises(typer.Exit) as exited, flow_from_shell():
        raise RuntimeError(f"{PREFECT_START_FAILURE}. Ephemeral server process exited with code 3.")
    assert exited.value.exit_code == 1
    shown = capsys.readouterr().err.strip()
    assert shown.startswith("error: Prefect's temporary server exited with code 3 before it started")
    assert "prefect server start" in shown
    assert "\n" not in shown


def test_a_server_that_does_not_answer_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    with pytest.raises(typer.Exit) as exited, flow_from_shell():
        raise RuntimeError("Failed to reach API at http://127.0.0.1:9/api/")
    assert exited.value.exit_code == 1
    shown = capsys.readouterr().err.strip().splitlines()
    assert shown[0] == "error: no Prefect server answers at http://127.0.0.1:9/api/"
    assert "prefect server start" in shown[1]
    assert len(shown) == 2


@pytest.fixture
def temporary_server_started(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """No ``PREFECT_API_URL``: the command starts its temporary server (a fake that is up at once)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class Started:
        api_url = "http://127.0.0.1:9/api"

        def wait(self, timeout: float) -> None:
            return None

    monkeypatch.setattr(TemporaryServer, "start", classmethod(lambda cls, settings_env=None: Started()))
    with temporary_settings(updates={PREFECT_API_URL: None}):
        yield Started.api_url


def _connect_error(url: str) -> httpx.ConnectError:
    return httpx.ConnectError("All connection attempts failed", request=httpx.Request("POST", url))


@pytest.mark.parametrize(
    "error",
    [
        # a call in the middle of the run (what a killed server gives, tried by hand)
        _connect_error("http://127.0.0.1:9/api/flow_runs/0f1e/set_state"),
        # Prefect's own wording, when its first call gets no answer
        RuntimeError("Failed to reach API at http://127.0.0.1:9/api/"),
    ],
    ids=["connect-error", "runtime-error"],
)
def test_the_commands_own_server_gone_mid_run_is_one_line_that_blames_no_setting(
    error: Exception, temporary_server_started: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The temporary server started, then stopped answering: one line, no traceback, and no advice to unset
    a PREFECT_API_URL the user never set."""
    import typer

    def run_whose_server_goes(shell: ShellFlow) -> None:
        shell.server()
        assert shell.temporary_api == temporary_server_started
        raise error

    with pytest.raises(typer.Exit) as exited, flow_from_shell() as shell:
        run_whose_server_goes(shell)
    assert exited.value.exit_code == 1
    shown = capsys.readouterr().err.strip().splitlines()
    assert shown[0].startswith("error: Prefect's temporary server at http://127.0.0.1:9/api")
    assert shown[0].endswith(
        " stopped answering during the run (was it killed, or the machine short of memory?)"
    )
    assert shown[1].startswith("hint: run the command again")
    assert "unset PREFECT_API_URL" not in shown[1]
    assert len(shown) == 2


def test_a_named_server_gone_mid_run_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import typer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}),
        pytest.raises(typer.Exit),
        flow_from_shell(),
    ):
        raise _connect_error("http://127.0.0.1:4200/api/logs/")
    shown = capsys.readouterr().err.strip().splitlines()
    assert shown == [
        "error: no Prefect server answers at http://127.0.0.1:4200/api",
        "hint: start it (`prefect server start`), or unset PREFECT_API_URL for a temporary one",
    ]


def test_a_connect_error_of_another_host_is_not_taken_for_the_server(temporary_server_started: str) -> None:
    """Only Prefect's calls: the cloud's never reach here raw (imsflow.client names them), so one that did
    is a bug and keeps its traceback."""

    def run_whose_cloud_call_escaped(shell: ShellFlow) -> None:
        shell.server()
        raise _connect_error("http://127.0.0.1:8780/v3/auth/tokens")

    with pytest.raises(httpx.ConnectError), flow_from_shell() as shell:
        run_whose_cloud_call_escaped(shell)


def test_other_runtime_errors_are_not_taken_for_the_server() -> None:
    with pytest.raises(RuntimeError, match="something else"), flow_from_shell():
        raise RuntimeError("something else")


@pytest.mark.slow
def test_a_real_server_given_too_little_time(tmp_path: Path) -> None:
    """``imsflow delete`` as a process, with a timeout no temporary server can meet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMSFLOW_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1",
    )
    result = subprocess.run(
        [*IMSFLOW, "delete", IMAGE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    expected = "error: Prefect's temporary server did not start within 1 s (is the machine busy?): start one"
    assert last.startswith(expected), result.stderr
