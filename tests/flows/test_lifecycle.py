"""Delete, export and prune as flows on Prefect's test harness, against the in-process local cloud."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort

from flows.lifecycle import (
    DeleteImageParams,
    ExportImageParams,
    PruneParams,
    delete_image,
    export_image,
    prune_images,
)
from imsflow.errors import ImageBeingCreatedError, JobFailedError
from localcloud import LocalCloud, ManualClock, Seed
from runtime.credentials import ImsflowCredentials
from tasks.image import INSTANCE_TAG, REQUEST_TAG
from tests.support import DB_1, PASSWORD, WEB_1, cloud_runtime, endpoints, seed_data

# Ages are measured against the wall clock, so the cloud's clock starts at the real now.
NOW = datetime.now(UTC).replace(microsecond=0)


def _id(n: int) -> str:
    return f"1a2b3c4d-0000-4000-8000-{n:012d}"


def ours(n: int, days_old: float, instance: str = WEB_1, **extra: Any) -> dict[str, Any]:
    return {
        "id": _id(n),
        "name": f"web-1-{n}",
        "project": "eu-de",
        "created_at": (NOW - timedelta(days=days_old)).isoformat(),
        "tags": [f"{REQUEST_TAG}.req{n}", f"{INSTANCE_TAG}.{instance}"],
        **extra,
    }


IMAGES = [
    ours(1, 1),
    ours(2, 10),
    ours(3, 40),
    ours(4, 50),
    ours(5, 60),  # db-1 runs from it
    ours(6, 70, protected=True),
    ours(7, 80, status="saving"),
    {
        "id": _id(8),
        "name": "golden-by-hand",
        "project": "eu-de",
        "created_at": (NOW - timedelta(days=400)).isoformat(),
    },
    ours(9, 90, instance=DB_1),  # the only imsflow image of db-1
]


def make_cloud(images: list[dict[str, Any]] | None = None) -> LocalCloud:
    data = seed_data(images=IMAGES if images is None else images, buckets=["imsflow-exports"])
    for server in data["servers"]:
        if server["id"] == DB_1:
            server["image_id"] = _id(5)
    return LocalCloud(seed=Seed.model_validate(data), clock=ManualClock(NOW))


async def test_prune_keeps_exactly_what_it_should() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        result = await prune_images(PruneParams(keep=2, max_age_days=30))

    assert set(cloud.ims.images) == {_id(n) for n in (1, 2, 5, 6, 7, 8, 9)}
    assert {d.image_id for d in result.deleted} == {_id(3), _id(4)}
    kept = {d.image_id: d.reason for d in result.kept}
    assert kept[_id(5)] == "in use by an ECS"
    assert kept[_id(6)] == "protected"
    assert kept[_id(7)] == "still being created"
    assert _id(8) not in kept, "an image imsflow did not make is not even considered"
    assert cloud.stats()["ims.delete_image"] == 2

    async with get_client() as client:
        latest = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["image-retention"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert latest, "the run made a table artifact"
    assert latest[0].type == "table"
    rows = latest[0].data if isinstance(latest[0].data, list) else json.loads(str(latest[0].data))
    actions = {row["image ID"]: row["action"] for row in rows}
    assert actions[_id(3)] == "deleted"
    assert actions[_id(5)] == "keep"


async def test_prune_dry_run_lists_and_deletes_nothing() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        result = await prune_images(PruneParams(keep=2, max_age_days=30, dry_run=True))
    assert {d.image_id for d in result.deleted} == {_id(3), _id(4)}
    assert len(cloud.ims.images) == len(IMAGES)
    assert cloud.stats()["ims.delete_image"] == 0
    assert result.summary == "kept 6, would delete 2"


async def test_prune_only_the_given_ecs() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        result = await prune_images(PruneParams(instance_ids=[DB_1], keep=None, max_age_days=1))
    # db-1's only image is 90 days old: it goes; web-1's images are not looked at.
    assert [d.image_id for d in result.deleted] == [_id(9)]
    assert _id(9) not in cloud.ims.images
    assert _id(3) in cloud.ims.images


GONE_ECS = "6f1c2d7e-0000-4000-8000-000000000404"  # imaged by imsflow, then deleted


@pytest.mark.parametrize("told", [False, True], ids=["kept", "prune-gone-servers"])
async def test_prune_keeps_the_last_image_of_a_server_that_is_gone(told: bool) -> None:
    gone = [ours(n, days_old, instance=GONE_ECS) for n, days_old in ((21, 40), (22, 50))]
    cloud = make_cloud(IMAGES + gone)
    assert GONE_ECS not in cloud.ecs.servers
    with cloud_runtime(cloud):
        result = await prune_images(PruneParams(keep=None, max_age_days=30, prune_gone_servers=told))

    deleted = {d.image_id for d in result.deleted}
    assert _id(22) in deleted
    if told:
        assert _id(21) in deleted
        assert _id(21) not in cloud.ims.images
    else:
        kept = {d.image_id: d.reason for d in result.kept}
        assert kept[_id(21)] == "last image of a server that no longer exists"
        assert _id(21) in cloud.ims.images
        async with get_client() as client:
            latest = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["image-retention"])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
        rows = latest[0].data if isinstance(latest[0].data, list) else json.loads(str(latest[0].data))
        row = next(r for r in rows if r["image ID"] == _id(21))
        assert (row["action"], row["why"]) == ("keep", "last image of a server that no longer exists")
    # web-1 exists: its old images go by the rule either way.
    assert {_id(3), _id(4)} <= deleted


async def test_delete_waits_until_gone_and_missing_is_fine() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        first = await delete_image(DeleteImageParams(image_id=_id(2)))
        again = await delete_image(DeleteImageParams(image_id=_id(2)))
    assert first.outcome == "deleted"
    assert again.outcome == "already-gone"
    assert _id(2) not in cloud.ims.images
    assert cloud.stats()["ims.delete_image"] == 1


async def test_delete_refuses_an_image_being_created() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud), pytest.raises(ImageBeingCreatedError, match=r"IMG\.0090.*being created"):
        await delete_image(DeleteImageParams(image_id=_id(7)))
    assert _id(7) in cloud.ims.images
    assert cloud.stats()["ims.delete_image"] == 0


async def test_export_waits_for_the_job() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        result = await export_image(
            ExportImageParams(image_id=_id(1), bucket_url="imsflow-exports:web-1.qcow2", file_format="qcow2")
        )
        cloud.ims.settle()
    assert result.job_id
    exported = cloud.ims.buckets["imsflow-exports"]["web-1.qcow2"]
    assert exported["image_id"] == _id(1)
    assert exported["file_format"] == "qcow2"


async def test_quick_export_and_missing_bucket() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        quick = await export_image(
            ExportImageParams(image_id=_id(1), bucket_url="imsflow-exports:q.zvhd2", quick=True)
        )
        with pytest.raises(JobFailedError, match=r"IMG\.0069"):
            await export_image(
                ExportImageParams(image_id=_id(2), bucket_url="no-such-bucket:x.vhd", file_format="vhd")
            )
        cloud.ims.settle()
    assert quick.file_format == "zvhd2 (quick)"
    assert cloud.ims.buckets["imsflow-exports"]["q.zvhd2"]["is_quick_export"] is True


async def test_credentials_block_wins_over_the_environment() -> None:
    cloud = make_cloud()
    await ImsflowCredentials(
        profile="local",
        **endpoints(),
        domain="demo",
        username="alice",
        password=PASSWORD,
    ).asave("lifecycle-test", overwrite=True)
    # The runner's own settings carry a wrong password: only the block can make this work.
    with cloud_runtime(cloud, password="not-the-password"):
        result = await delete_image(DeleteImageParams(image_id=_id(1)), credentials_block="lifecycle-test")
    assert result.outcome == "deleted"
    async with get_client() as client:
        runs = await client.read_flow_runs(limit=1, sort=FlowRunSort.START_TIME_DESC)
    assert runs[0].parameters["credentials_block"] == "lifecycle-test"
    assert PASSWORD not in str(runs[0].parameters)
