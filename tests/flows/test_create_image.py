"""The create-image flow on Prefect's test harness against the in-process local cloud (virtual time)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.settings import PREFECT_HOME

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from imsflow.errors import EcsNotReadyError, InvalidCredentialsError, JobTimeoutError
from imsflow.validation import check_tag
from localcloud import LocalCloud
from localcloud.ims.state import Image
from tasks.image import INSTANCE_TAG, REQUEST_TAG, request_key
from tests.support import DB_1, PASSWORD, WEB_1, cloud_runtime, make_cloud

#: Also on one base URL for all services (tests/flows/conftest.py: pytest_generate_tests).
pytestmark = pytest.mark.both_layouts


def _images(cloud: LocalCloud) -> list[Image]:
    return list(cloud.ims.images.values())


async def test_creates_one_active_image_with_our_tags() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        result = await create_image_from_ecs(
            CreateImageParams(instance_id=WEB_1, name="web-1-golden", tags=["env=prod"])
        )
        assert isinstance(result, CreateImageResult)

    images = _images(cloud)
    assert len(images) == 1
    image = images[0]
    assert result.image_id == image.id
    assert result.how == "submitted"
    assert image.status == "active"
    assert image.name == "web-1-golden"
    stats = cloud.stats()
    assert stats["iam.create_token"] == 1
    assert stats["ims.create_image"] == 1
    assert set(result.seconds) == {"get-token", "check-ecs-stopped", "submit-image", "poll-job"}


async def test_rerun_resumes_and_makes_no_iam_call() -> None:
    cloud = make_cloud()
    params = CreateImageParams(instance_id=WEB_1, name="web-1-nightly")
    with cloud_runtime(cloud):
        first = await create_image_from_ecs(params)
        assert isinstance(first, CreateImageResult)
        second = await create_image_from_ecs(params)
        assert isinstance(second, CreateImageResult)

    assert second.image_id == first.image_id
    assert second.how == "resumed"
    assert len(_images(cloud)) == 1
    stats = cloud.stats()
    assert stats["iam.create_token"] == 1, "the second run must reuse the cached token"
    assert stats["ims.create_image"] == 1


async def test_running_ecs_fails_before_submitting() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud), pytest.raises(EcsNotReadyError, match=r"db-1.*ACTIVE.*stop"):
        await create_image_from_ecs(CreateImageParams(instance_id=DB_1, name="db-1-golden"))
    assert cloud.stats().get("ims.create_image", 0) == 0


async def test_stop_if_running_stops_images_and_starts_again() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        result = await create_image_from_ecs(
            CreateImageParams(instance_id=DB_1, name="db-1-golden", stop_if_running=True)
        )
        assert isinstance(result, CreateImageResult)
    assert cloud.ims.images[result.image_id].status == "active"
    stats = cloud.stats()
    assert stats["ecs.stop_servers"] == 1
    assert stats["ecs.start_servers"] == 1
    server = cloud.ecs.servers[DB_1]
    assert server.status == "ACTIVE"


async def test_job_timeout_leaves_the_ecs_stopped_and_a_rerun_starts_it() -> None:
    # A job that outlasts the run's timeout may still be running: IMS needs the ECS stopped until it ends,
    # so no start is attempted. imsflow's power record stays, and the re-run that sees the job end starts it.
    cloud = make_cloud(timing={"image_job_seconds": 300, "stop_seconds": 10, "start_seconds": 10})
    slow = CreateImageParams(instance_id=DB_1, name="db-1-slow", stop_if_running=True, timeout_minutes=1)
    with cloud_runtime(cloud):
        with pytest.raises(JobTimeoutError, match="RUNNING"):
            await create_image_from_ecs(slow)
        stats = cloud.stats()
        assert stats["ecs.stop_servers"] == 1
        assert stats.get("ecs.start_servers", 0) == 0
        assert cloud.ecs.servers[DB_1].status == "SHUTOFF"

        result = await create_image_from_ecs(slow.model_copy(update={"timeout_minutes": 30}))
        assert isinstance(result, CreateImageResult)
    assert result.how == "resumed"
    assert cloud.ims.images[result.image_id].status == "active"
    stats = cloud.stats()
    assert stats["ims.create_image"] == 1
    assert stats["ecs.stop_servers"] == 1
    assert stats["ecs.start_servers"] == 1
    assert cloud.ecs.servers[DB_1].status == "ACTIVE"


async def test_wrong_password_fails_once_without_retry_storm() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud, password="not-the-password"), pytest.raises(InvalidCredentialsError):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="web-1-golden"))
    # one attempt: a wrong password is not transient, and the flow itself never retries
    assert cloud.stats()["iam.create_token"] == 1
    assert cloud.stats().get("ims.create_image", 0) == 0


async def test_token_and_password_never_stored_in_plaintext() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="web-1-secret-scan"))
    tokens = [t for t in cloud.iam.tokens]  # token strings issued by the local cloud
    assert tokens
    needles = [PASSWORD.encode(), *(t.encode() for t in tokens)]
    home = Path(PREFECT_HOME.value())
    hits = [
        str(path)
        for path in home.rglob("*")
        if path.is_file() and any(n in path.read_bytes() for n in needles)
    ]
    assert hits == []


def test_request_key_is_stable_and_tag_sized() -> None:
    key = request_key(WEB_1, "web-1-golden")
    assert key == request_key(WEB_1, "web-1-golden")
    assert key != request_key(WEB_1, "web-1-other")
    assert len(key) == 32
    assert request_key(WEB_1, "x", idempotency_key="abc") == request_key(DB_1, "y", idempotency_key="abc")
    # Both of imsflow's tags are valid IMS tags with this key and an instance ID as values.
    assert check_tag(f"{REQUEST_TAG}.{key}")
    assert check_tag(f"{INSTANCE_TAG}.{WEB_1}")
