"""Dry run: credentials, ECS state, quota and name checked with read-only calls; nothing submitted."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from typer.testing import CliRunner

from cli.app import QUIET_PREFECT
from cli.main import app
from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from imsflow.errors import InvalidCredentialsError
from localcloud import LocalCloud
from tasks.preflight import DryRunResult
from tests.support import DB_1, WEB_1, cloud_runtime, make_cloud

OTHER_IMAGE = "11111111-2222-4333-8444-555555555555"


def _nothing_changed(cloud: LocalCloud, images_before: int = 0) -> None:
    stats = cloud.stats()
    for write in ("ims.create_image", "ecs.stop_servers", "ecs.start_servers"):
        assert stats.get(write, 0) == 0, f"a dry run called {write}"
    assert len(cloud.ims.images) == images_before


async def _dry(cloud: LocalCloud, **params: object) -> DryRunResult:
    with cloud_runtime(cloud):
        result = await create_image_from_ecs(CreateImageParams(dry_run=True, **params))
    assert isinstance(result, DryRunResult)
    return result


async def test_would_submit_and_says_so_in_an_artifact(caplog: pytest.LogCaptureFixture) -> None:
    cloud = make_cloud()
    result = await _dry(cloud, instance_id=WEB_1, name="web-1-dry")
    assert "without an image id" not in caplog.text, "a dry run is not a run that lost its image"

    assert result.would == "submit"
    assert result.problems == []
    assert result.ecs == "web-1 (SHUTOFF)"
    assert (result.quota_used, result.quota_total) == (0, 50)
    _nothing_changed(cloud)
    stats = cloud.stats()
    assert stats["iam.create_token"] == 1, "the credentials are checked"
    assert stats["ecs.show_server"] == 1
    assert stats["ims.show_quota"] == 1
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["image-dry-run"]))
        )
    assert any("would submit" in str(a.data) and "web-1-dry" in str(a.data) for a in artifacts)


async def test_running_ecs_is_a_problem_unless_it_may_be_stopped() -> None:
    cloud = make_cloud()
    refused = await _dry(cloud, instance_id=DB_1, name="db-1-dry")
    assert refused.would == "refuse"
    assert any("ACTIVE" in p and "stopped ECS" in p for p in refused.problems)

    stopping = await _dry(cloud, instance_id=DB_1, name="db-1-dry", stop_if_running=True)
    assert stopping.would == "submit"
    assert stopping.would_stop_ecs
    _nothing_changed(cloud)
    assert cloud.ecs.servers[DB_1].status == "ACTIVE"


async def test_running_ecs_whose_image_is_made_is_no_problem() -> None:
    # As in a real run: a running ECS is left as it is once the request's image is made (no power cycle).
    cloud = make_cloud()
    with cloud_runtime(cloud):
        made = await create_image_from_ecs(
            CreateImageParams(instance_id=DB_1, name="db-1-dry", stop_if_running=True)
        )
    assert isinstance(made, CreateImageResult)
    stats = cloud.stats()

    for stop_if_running in (False, True):
        result = await _dry(cloud, instance_id=DB_1, name="db-1-dry", stop_if_running=stop_if_running)
        assert result.would == "resume"
        assert result.problems == []
        assert not result.would_stop_ecs
        assert any("left as it is" in n and made.image_id in n for n in result.notes)
    after = cloud.stats()
    for write in ("ims.create_image", "ecs.stop_servers", "ecs.start_servers"):
        assert after[write] == stats[write], f"a dry run called {write}"


async def test_quota_used_up_and_name_clash() -> None:
    cloud = make_cloud(
        images=[{"id": OTHER_IMAGE, "name": "web-1-dry", "project": "eu-de"}], limits={"image_quota": 1}
    )
    result = await _dry(cloud, instance_id=WEB_1, name="web-1-dry")
    assert result.would == "refuse"
    assert result.problems == ["the image quota is used up (1 of 1)"]
    assert result.same_name_image_ids == [OTHER_IMAGE]
    assert any("other image(s) named 'web-1-dry'" in n for n in result.notes)
    _nothing_changed(cloud, images_before=1)


async def test_after_a_real_run_it_would_resume_not_submit() -> None:
    cloud = make_cloud()
    params = {"instance_id": WEB_1, "name": "web-1-twice"}
    with cloud_runtime(cloud):
        made = await create_image_from_ecs(CreateImageParams(**params))
    assert isinstance(made, CreateImageResult)
    result = await _dry(cloud, **params)
    assert result.would == "resume"
    assert result.same_name_image_ids == [made.image_id]
    assert cloud.stats()["ims.create_image"] == 1


async def test_wrong_password_fails_the_dry_run() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud, password="wrong-password"), pytest.raises(InvalidCredentialsError):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="x", dry_run=True))
    assert cloud.stats().get("ecs.show_server", 0) == 0


def test_cli_dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in QUIET_PREFECT.items():  # restored after the test, unlike the CLI's setdefault
        monkeypatch.setenv(name, value)
    cloud = make_cloud()
    runner = CliRunner()
    with cloud_runtime(cloud):
        ok = runner.invoke(app, ["create", "-i", WEB_1, "-n", "web-1-cli", "--dry-run"])
        refused = runner.invoke(app, ["create", "-i", DB_1, "-n", "db-1-cli", "--dry-run"])
    assert ok.exit_code == 0, ok.output
    assert "a real run would submit; nothing was submitted" in ok.output
    assert refused.exit_code == 1, refused.output
    assert "would refuse" in refused.output
    assert "problem" in refused.output
    _nothing_changed(cloud)
