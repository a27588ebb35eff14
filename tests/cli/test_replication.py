"""`imsflow replicate`: its help, what it refuses before any flow or server, and how a refusal reads."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cli.app import friendly_errors
from cli.main import app
from imsflow.models import Image
from imsflow.validation import DESCRIPTION_RULE, NAME_RULE, UUID_RULE
from tasks.replication import not_replicable, replicable_or_why

runner = CliRunner()
IMAGE = "d164b5df-1bc3-4c3f-893e-3e471fd16e64"
CMK = "bd66288c-9081-460a-8227-4cbd0c814cb4"


def test_the_command_is_registered_and_explains_itself() -> None:
    top = runner.invoke(app, ["--help"], terminal_width=200)
    assert "replicate" in top.output
    help_ = runner.invoke(app, ["replicate", "--help"], terminal_width=200)
    assert help_.exit_code == 0
    for option in ("--name", "--cmk-id", "--enterprise-project-id", "--description", "--credentials-block"):
        assert option in help_.output
    assert "full-ECS" in help_.output


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        (["replicate", "golden", "--name", "x"], "invalid IMAGE_ID 'golden': " + UUID_RULE),
        (["replicate", IMAGE, "--name", " x"], "invalid --name ' x': " + NAME_RULE),
        (["replicate", IMAGE, "-n", "x", "--cmk-id", "my-key"], "invalid --cmk-id 'my-key': " + UUID_RULE),
        (
            ["replicate", IMAGE, "-n", "x", "--enterprise-project-id", "sales"],
            "invalid --enterprise-project-id",
        ),
        (["replicate", IMAGE, "-n", "x", "--description", "<b>"], DESCRIPTION_RULE),
        (["replicate", IMAGE, "-n", "x", "--credentials-block", "Prod_EU"], "--credentials-block"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_bad_values_exit_2_stating_the_rule(command: list[str], rule: str) -> None:
    result = runner.invoke(app, command, terminal_width=300)
    assert result.exit_code == 2, result.output
    assert rule in " ".join(result.output.split())


def test_the_name_is_required() -> None:
    result = runner.invoke(app, ["replicate", IMAGE])
    assert result.exit_code == 2
    assert "--name" in result.output


@pytest.mark.parametrize(
    ("attributes", "why"),
    [
        (
            {"__whole_image": True},
            "full-ECS image (__whole_image true): full-ECS images cannot be replicated",
        ),
        ({"virtual_env_type": "IsoImage"}, "made from an ISO file"),
        ({"status": "saving"}, "it is saving, not active"),
    ],
)
def test_a_refused_image_reads_as_one_line_saying_why(
    attributes: dict[str, object], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    image = Image.model_validate({"id": IMAGE, "name": "golden", "status": "active", **attributes})
    refusal = not_replicable(image)
    assert refusal is not None
    # What check-replicable raises, as the CLI shows it (one line and a hint; exit 1).
    with pytest.raises(typer.Exit) as exited, friendly_errors():
        raise refusal
    assert exited.value.exit_code == 1
    shown = " ".join(capsys.readouterr().err.split())
    assert "image golden cannot be replicated: " in shown
    assert why in shown
    assert "hint: Replicate a system-disk or data-disk image" in shown


def test_an_active_system_image_may_be_replicated() -> None:
    assert replicable_or_why(Image.model_validate({"id": IMAGE, "status": "active"})) is None
