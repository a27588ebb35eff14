"""The ops commands' own checks: what they refuse before any flow or server is involved."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from cli.commands.ops import parse_age_days
from cli.main import app
from imsflow.validation import (
    BLOCK_NAME_RULE,
    BUCKET_URL_RULE,
    DESCRIPTION_RULE,
    NAME_RULE,
    TAG_PARAM_RULE,
    UUID_RULE,
)

runner = CliRunner()
IMAGE = "11111111-2222-4333-8444-555555555555"


@pytest.mark.parametrize(
    ("text", "days"),
    [("30d", 30.0), ("12h", 0.5), ("2w", 14.0), ("7", 7.0), (" 1.5d ", 1.5), ("90m", 90 / 1440)],
)
def test_ages(text: str, days: float) -> None:
    assert parse_age_days(text) == pytest.approx(days)


@pytest.mark.parametrize("text", ["0d", "30x", "d", "-3d", ""])
def test_bad_ages_exit_2(text: str) -> None:
    with pytest.raises(typer.Exit) as exited:
        parse_age_days(text)
    assert exited.value.exit_code == 2


def test_prune_keeps_gone_servers_last_image_unless_told() -> None:
    result = runner.invoke(app, ["prune", "--help"])
    assert result.exit_code == 0
    assert "--prune-gone-servers" in result.output


def test_prune_needs_a_rule() -> None:
    result = runner.invoke(app, ["prune", "--dry-run"])
    assert result.exit_code == 2
    assert "--keep N, --max-age AGE or both" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "qcow2", "--quick"], "exclude each other"),
        ([], "give --format"),
    ],
)
def test_export_needs_exactly_one_of_format_and_quick(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["export", IMAGE, "--bucket-url", "bucket:f", *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        (["delete", "web-1"], "invalid IMAGE_ID 'web-1': " + UUID_RULE),
        (["export", "web-1", "--bucket-url", "bucket:f", "--quick"], UUID_RULE),
        (
            ["export", IMAGE, "--bucket-url", "b:f", "--quick"],
            "invalid --bucket-url 'b:f': " + BUCKET_URL_RULE,
        ),
        (["export", IMAGE, "--bucket-url", "Bucket:f", "--quick"], BUCKET_URL_RULE),
        (["export", IMAGE, "--bucket-url", "bucket:a b", "--quick"], BUCKET_URL_RULE),
        (["prune", "--keep", "2", "-i", IMAGE, "-i", "web-1"], "invalid --instance-id 'web-1': " + UUID_RULE),
        (["delete", IMAGE, "--credentials-block", "Prod_EU"], BLOCK_NAME_RULE),
        (["create", "-i", "web-1", "-n", "x"], "invalid --instance-id 'web-1': " + UUID_RULE),
        (["create", "-i", IMAGE, "-n", " x"], "invalid --name ' x': " + NAME_RULE),
        (["create", "-i", IMAGE, "-n", "x", "--description", "<b>"], DESCRIPTION_RULE),
        (
            ["create", "-i", IMAGE, "-n", "x", "--tag", "env.prod"],
            "invalid --tag 'env.prod': " + TAG_PARAM_RULE,
        ),
        (["fleet", "--tag", "env"], "invalid --tag 'env': " + TAG_PARAM_RULE),
        (["fleet", "-i", "web-1"], "invalid --instance-id 'web-1': " + UUID_RULE),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_options_state_the_rule_they_break(command: list[str], rule: str) -> None:
    # The same checks as the flow forms (imsflow.validation), before any flow or server is involved.
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert rule in result.output
    assert "^" not in result.output  # the rule in words, never a regex


@pytest.mark.parametrize(
    "command", [["serve"], ["blocks", "register"], ["notify", "--webhook-url", "http://x"]]
)
def test_server_commands_say_a_server_is_needed(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # Unset in this process too, whatever an earlier test of this worker set (tests/flows: the test server).
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    assert "no Prefect server: PREFECT_API_URL is not set" in result.output
    assert "prefect server start" in result.output


@pytest.mark.slow  # a process of its own: Prefect's import, seconds
def test_a_server_command_says_so_as_a_process_too() -> None:
    """The same, as a user's shell runs it: a process of its own, no PREFECT_API_URL in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "no Prefect server: PREFECT_API_URL is not set" in result.stderr
    assert "prefect server start" in result.stderr


def test_a_server_command_waits_for_the_server_then_says_none_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cli.commands import ops

    monkeypatch.setattr(ops, "SERVER_WAIT_SECONDS", 1)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    with temporary_settings(updates={PREFECT_API_URL: url}):
        result = CliRunner().invoke(app, ["blocks", "register"])
    assert result.exit_code == 1
    assert f"waiting for the Prefect server at {url} ..." in result.output
    assert f"no Prefect server answers at {url} (waited 1 s)" in result.output


def test_a_second_local_cloud_on_a_taken_port_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["cloud", "--port", str(port)])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} is in use: a local cloud may be running there already" in result.output
    assert "Traceback" not in result.output
