"""Every error the CLI shows carries the cloud's request ID when there is one."""

from __future__ import annotations

import pickle

import pytest
import typer

from cli.app import friendly_errors
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
