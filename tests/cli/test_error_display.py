"""Every error the CLI shows carries the cloud's request ID when there is one."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import typer

from cli.app import friendly_errors
from cli.main import main
from imsflow.errors import ImsflowError, JobFailedError, JobTimeoutError, error_for


@pytest.mark.parametrize(
    "error",
    [
        error_for(400, "IMG.0008", "not stopped", "https://ims.example/v2/cloudimages/action", "req-api"),
        JobFailedError(job_id="j1", error_code="IMG.0037", fail_reason="snapshot", request_id="req-api"),
        JobTimeoutError(job_id="j1", last_status="RUNNING", waited_seconds=60, request_id="req-api"),
    ],
    ids=["api", "job-failed", "job-timeout"],
)
def test_cli_error_line_names_the_request_id(error: ImsflowError, capsys: pytest.CaptureFixture[str]) -> None:
    # Flow failures reach the CLI pickled (Prefect stores the exception): the request ID must survive that.
    revived = pickle.loads(pickle.dumps(error))
    with pytest.raises(typer.Exit), friendly_errors():
        raise revived
    shown = capsys.readouterr().err
    assert "[request id req-api]" in shown
    assert "hint:" in shown


def test_fleet_summary_table_keeps_the_request_id() -> None:
    from rich.console import Console

    from cli.commands.fleet import summary
    from flows.fleet import FleetResult, FleetRow

    row = FleetRow(
        instance_id="6f1c2d7e-0000-4000-8000-000000000001",
        server_name="web-1",
        image_name="web-1-x",
        outcome="failed",
        error="HTTP 400 IMG.0008: not stopped (url) [request id req-row]",
    )
    console = Console(width=400, record=True)
    console.print(summary(FleetResult(rows=[row], wall_seconds=1)))
    assert "[request id req-row]" in console.export_text()


def test_a_missing_ca_file_is_one_line_before_any_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prefect and every client would fail on it with a traceback: the CLI says it first, and nothing runs."""
    missing = tmp_path / "corporate-ca.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    monkeypatch.setattr(sys, "argv", ["imsflow", "config"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    shown = capsys.readouterr()
    assert shown.out == ""
    assert shown.err.splitlines()[0] == f"error: SSL_CERT_FILE={missing}: no such file"
    assert shown.err.splitlines()[1].startswith("hint: Point SSL_CERT_FILE at a PEM bundle")
