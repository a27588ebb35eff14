"""Plain http to a remote host is refused wherever a client is built for a real run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import runtime
from cli.app import QUIET_PREFECT
from cli.main import app
from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from imsflow.errors import ConfigError
from tests.support import WEB_1, cloud_runtime, make_cloud

REMOTE = "http://10.20.30.40:8780"
ENDPOINTS: dict[str, Any] = {"iam_url": REMOTE, "ecs_url": REMOTE, "ims_url": REMOTE}


@pytest.fixture
def env_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """``imsflow create`` reads IMSFLOW_* from the environment (no .env of the developer's)."""
    monkeypatch.chdir(tmp_path)
    for name, value in QUIET_PREFECT.items():
        monkeypatch.setenv(name, value)
    runtime.reset()  # settings are read from the environment anew
    yield
    runtime.reset()


def test_cli_refuses_remote_plain_http_in_one_line(
    env_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMSFLOW_PROFILE", "local")
    monkeypatch.setenv("IMSFLOW_IMS_URL", REMOTE)
    result = CliRunner().invoke(app, ["create", "-i", WEB_1, "-n", "web-1-insecure"])

    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [
        f"error: ims endpoint {REMOTE} uses plain http to a remote host; credentials would travel unencrypted"
    ]
    assert all(line.startswith(("error:", "hint:")) for line in lines), result.output
    assert "IMSFLOW_ALLOW_INSECURE" in result.output
    assert "creating image" not in result.output, "refused before the flow started"


def test_cli_allows_it_when_told(env_settings: None) -> None:
    # The in-process local cloud answers whatever host the URLs name.
    cloud = make_cloud()
    with cloud_runtime(cloud, allow_insecure=True, **ENDPOINTS):
        result = CliRunner().invoke(app, ["create", "-i", WEB_1, "-n", "web-1-insecure", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "plain http" not in result.output


async def test_flow_refuses_before_any_call() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud, **ENDPOINTS), pytest.raises(ConfigError, match="plain http to a remote host"):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="web-1-insecure"))
    assert sum(cloud.stats().values()) == 0


async def test_flow_with_aksk_refuses_too() -> None:
    cloud = make_cloud()
    aksk: dict[str, Any] = {
        "username": None,
        "password": None,
        "access_key": "AK0000000001",
        "secret_key": "sk-0000000001",
    }
    with cloud_runtime(cloud, **ENDPOINTS, **aksk), pytest.raises(ConfigError, match="plain http"):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="web-1-insecure"))
    assert sum(cloud.stats().values()) == 0


async def test_flow_runs_when_insecure_is_allowed() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud, allow_insecure=True, **ENDPOINTS):
        result = await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="web-1-insecure"))
        assert isinstance(result, CreateImageResult)
    assert cloud.ims.images[result.image_id].status == "active"
