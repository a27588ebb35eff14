"""``--kind`` and ``--data-volume`` of ``imsflow create`` and ``imsflow fleet``: their help, and what they
refuse before any flow or server is involved."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from imsflow.validation import IMAGE_KINDS, UUID_RULE

runner = CliRunner()
ECS = "6f1c2d7e-0000-4000-8000-000000000001"
VOLUME = "11111111-2222-4333-8444-555555555555"


@pytest.mark.parametrize("command", ["create", "fleet"])
def test_help_names_every_kind_and_the_data_volume_option(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "--kind" in text
    assert "--data-volume" in text
    assert "system|system-and-data" in text
    for kind, words in IMAGE_KINDS.items():
        assert f"{kind}: {words}" in text
    assert "web-1-20261127-vdb" in text
    assert "[default: system]" in text


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["create", "-i", ECS, "-n", "x", "--kind", "whole"], "'whole' is not one of"),
        (
            ["create", "-i", ECS, "-n", "x", "--kind", "full-ecs", "--data-volume", VOLUME],
            "--data-volume does not go with --kind full-ecs",
        ),
        (["create", "-i", ECS, "-n", "x", "--vault-id", VOLUME], "--vault-id needs --kind full-ecs"),
        (
            ["create", "-i", ECS, "-n", "x", "--kind", "full-ecs", "--vault-id", "vault-1"],
            "invalid --vault-id 'vault-1': " + UUID_RULE,
        ),
        (
            ["create", "-i", ECS, "-n", "x", "--kind", "system-and-data", "--data-volume", "vdb"],
            "invalid --data-volume 'vdb': " + UUID_RULE,
        ),
        (
            ["create", "-i", ECS, "-n", "x", "--data-volume", VOLUME],
            "--data-volume needs --kind system-and-data",
        ),
        (["fleet", "-i", ECS, "--kind", "data"], "'data' is not one of"),
        (
            ["fleet", "-i", ECS, "--kind", "system-and-data", "--data-volume", "x"],
            "invalid --data-volume 'x': " + UUID_RULE,
        ),
        (["fleet", "-i", ECS, "--data-volume", VOLUME], "--data-volume needs --kind system-and-data"),
        (
            ["fleet", "-i", ECS, "--kind", "full-ecs", "--data-volume", VOLUME],
            "--data-volume does not go with --kind full-ecs",
        ),
        (["fleet", "-i", ECS, "--kind", "system", "--vault-id", VOLUME], "--vault-id needs --kind full-ecs"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_bad_kind_or_data_volume_exits_2_before_any_flow(command: list[str], message: str) -> None:
    result = runner.invoke(app, command, terminal_width=200)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())


VAULT = "3c2b1a09-0000-4000-8000-0000000000b1"


@pytest.mark.parametrize("command", ["create", "fleet"])
def test_vault_id_reaches_the_flow_with_the_kind_full_ecs(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from cli.flowrun import ShellFlow
    from flows.create_image import CreateImageParams, CreateImageResult
    from flows.fleet import FleetParams, FleetResult

    seen: list[CreateImageParams | FleetParams] = []

    def run(
        self: ShellFlow,
        flow: object,
        params: CreateImageParams | FleetParams,
        *args: object,
        **kwargs: object,
    ) -> object:
        seen.append(params)
        if command == "create":
            return CreateImageResult(
                image_id=VOLUME,
                job_id=None,
                name="x",
                instance_id=ECS,
                how="submitted",
                seconds={},
                kind="full-ecs",
            )
        return FleetResult(rows=[], wall_seconds=0.0, kind="full-ecs")

    monkeypatch.setattr(ShellFlow, "run", run)
    monkeypatch.setattr(ShellFlow, "server", lambda self: None)
    args = ["-i", ECS, "--kind", "full-ecs", "--vault-id", VAULT]
    args += ["-n", "x"] if command == "create" else []
    result = runner.invoke(app, [command, *args], env={"IMSFLOW_PROFILE": "local"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    [params] = seen
    assert params.kind == "full-ecs"
    assert params.vault_id == VAULT
