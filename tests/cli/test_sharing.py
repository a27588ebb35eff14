"""`imsflow share` and `imsflow accept`: their help, and what they refuse before any flow or server."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from imsflow.validation import PROJECT_ID_RULE, UUID_RULE

runner = CliRunner()
IMAGE = "d164b5df-1bc3-4c3f-893e-3e471fd16e64"
PROJECT = "edc89b490d7d4392898e19b2deb34797"


def test_both_commands_are_registered_and_explain_themselves() -> None:
    top = runner.invoke(app, ["--help"])
    assert "share" in top.output
    assert "accept" in top.output
    share = runner.invoke(app, ["share", "--help"], terminal_width=200)
    assert share.exit_code == 0
    for option in ("--project", "--remove", "--credentials-block", "--timeout"):
        assert option in share.output
    accept = runner.invoke(app, ["accept", "--help"], terminal_width=200)
    assert accept.exit_code == 0
    assert "--reject" in accept.output
    assert "RECEIVING" in accept.output


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        (["share", IMAGE, "--project", "eu-de"], "invalid --project 'eu-de': " + PROJECT_ID_RULE),
        (["share", IMAGE, "-p", PROJECT, "-p", PROJECT.upper()], PROJECT_ID_RULE),
        (["share", "golden", "-p", PROJECT], "invalid IMAGE_ID 'golden': " + UUID_RULE),
        (["accept", IMAGE, "web-1"], "invalid IMAGE_ID 'web-1': " + UUID_RULE),
        (["accept", IMAGE, "--credentials-block", "Prod_EU"], "--credentials-block"),
        (["create", "-i", IMAGE, "-n", "x", "--share-with", "eu-de"], "invalid --share-with 'eu-de'"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_bad_values_exit_2_stating_the_rule(command: list[str], rule: str) -> None:
    result = runner.invoke(app, command, terminal_width=300)
    assert result.exit_code == 2
    assert rule in " ".join(result.output.split())


def test_share_needs_a_project() -> None:
    result = runner.invoke(app, ["share", IMAGE])
    assert result.exit_code == 2
    assert "--project" in result.output
