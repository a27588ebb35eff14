"""The ``full-ecs`` image kind: one full-ECS image of an ECS (its system disk and every data disk), through
the one pipeline, exactly once (the local cloud in-process, on its virtual clock).

Crash points as in test_data_disks.py: the process dies (a ``BaseException``) before the POST left, after the
cloud applied it (the answer lost), while the job runs, and after the job succeeded; the re-run on the same
result storage ends with exactly one image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from flows.fleet import FleetResult, create_images_for_fleet
from imsflow.errors import ConflictError, EcsNotReadyError, InvalidParameterError, InvalidRequestError
from localcloud import LocalCloud
from localcloud.ims.state import Image
from tasks.image import INSTANCE_TAG, REQUEST_TAG, request_key
from tasks.preflight import DryRunResult
from tests.flows.test_fleet import ecs_id
from tests.flows.test_fleet import params as fleet_params
from tests.support import (
    DB_1,
    WEB_1,
    DiesAt,
    Killed,
    Matcher,
    cloud_runtime,
    crash_after,
    crash_at,
    image_look,
    job_query,
    make_cloud,
    seed_data,
)

NAME = "web-1-full-20261127"
VAULT = "3c2b1a09-0000-4000-8000-0000000000b1"
VAULTS = [{"id": VAULT, "name": "server-backups", "project": "eu-de"}]
FULL = CreateImageParams(instance_id=WEB_1, name=NAME, kind="full-ecs", vault_id=VAULT, tags=["env=prod"])


def whole_cloud(web_disks: int = 2, db_disks: int = 1, **extra: Any) -> LocalCloud:
    """web-1 (stopped) and db-1 (running) with data disks, and one CBR vault."""
    servers = seed_data()["servers"]
    servers[0]["data_disks"] = web_disks
    servers[1]["data_disks"] = db_disks
    return make_cloud(servers=servers, vaults=VAULTS, **extra)


def images(cloud: LocalCloud) -> list[Image]:
    return list(cloud.ims.images.values())


def tags(image: Image) -> dict[str, str]:
    return dict(tag.split("=", 1) if "=" in tag else tag.split(".", 1) for tag in image.tags)


def posts(cloud: LocalCloud) -> int:
    return cloud.stats().get("ims.create_whole_image", 0)


def power_ops(cloud: LocalCloud) -> int:
    stats = cloud.stats()
    return stats.get("ecs.stop_servers", 0) + stats.get("ecs.start_servers", 0)


async def create(cloud: LocalCloud, params: CreateImageParams, network: Any = None) -> CreateImageResult:
    with cloud_runtime(cloud, network):
        result = await create_image_from_ecs(params)
    assert isinstance(result, CreateImageResult)
    return result


def assert_one_whole_image(cloud: LocalCloud, result: CreateImageResult, server_id: str, name: str) -> None:
    made = images(cloud)
    assert len(made) == 1, [i.name for i in made]
    [image] = made
    assert image.id == result.image_id
    assert result.image_ids == [image.id]
    assert result.data_images == []
    assert image.whole_image
    assert image.status == "active"
    assert image.name == name
    assert tags(image)[REQUEST_TAG] == request_key(server_id, name, kind="full-ecs")
    assert tags(image)[INSTANCE_TAG] == server_id
    assert [j.job_type for j in cloud.ims.jobs.values()] == ["imsCreateWholeImageByInstanceJob"]
    assert cloud.stats().get("ims.create_image", 0) == 0


async def test_a_full_ecs_image_is_one_image_of_every_disk_tagged_and_named() -> None:
    cloud = whole_cloud()
    result = await create(cloud, FULL.model_copy(update={"description": "nightly"}))

    assert_one_whole_image(cloud, result, WEB_1, NAME)
    image = cloud.ims.images[result.image_id]
    assert image.description == "nightly"
    assert tags(image)["env"] == "prod"
    assert result.kind == "full-ecs"
    assert result.how == "submitted"
    assert posts(cloud) == 1
    assert {"plan-images", "check-ecs-ready", "submit-image", "poll-job"} == set(result.seconds) - {
        "get-token"
    }
    # The kind is part of the key: a full-ECS image and a system image of the same name are two requests.
    assert request_key(WEB_1, NAME, kind="full-ecs") != request_key(WEB_1, NAME)

    again = await create(cloud, FULL)
    assert again.how == "resumed"
    assert again.image_ids == result.image_ids
    assert posts(cloud) == 1


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
async def test_a_running_ecs_is_imaged_as_it_is_never_stopped_or_started() -> None:
    cloud = whole_cloud()
    params = CreateImageParams(
        instance_id=DB_1, name="db-1-full", kind="full-ecs", vault_id=VAULT, stop_if_running=True
    )
    result = await create(cloud, params)
    assert_one_whole_image(cloud, result, DB_1, "db-1-full")
    assert power_ops(cloud) == 0, "the page asks for no stopped ECS: no stop, no start"
    assert cloud.ecs.servers[DB_1].status == "ACTIVE"
    # A stopped one stays stopped ("If an ECS is in Stopped state, do not start it").
    other = await create(cloud, FULL)
    assert other.how == "submitted"
    assert cloud.ecs.servers[WEB_1].status == "SHUTOFF"
    assert power_ops(cloud) == 0


async def test_an_ecs_powering_on_is_refused_before_any_post() -> None:
    cloud = whole_cloud()
    cloud.ecs.start_servers(cloud.ecs.servers[WEB_1].project_id, [WEB_1])
    with pytest.raises(EcsNotReadyError, match="running or stopped, with no task in progress"):
        await create(cloud, FULL)
    assert posts(cloud) == 0


async def test_the_cloud_refuses_a_missing_or_unknown_vault() -> None:
    cloud = whole_cloud()
    with pytest.raises(ConflictError, match=r"IMG\.0188: Vault is unavailable"):
        await create(cloud, FULL.model_copy(update={"vault_id": "3c2b1a09-0000-4000-8000-000000000000"}))
    # The local cloud plays a CBR region: vault_id is mandatory there (the page).
    with pytest.raises(InvalidParameterError, match=r"IMG\.0001"):
        await create(cloud, FULL.model_copy(update={"vault_id": None}))
    assert images(cloud) == []


def test_the_form_rules_of_the_kind() -> None:
    with pytest.raises(ValueError, match="a full-ECS image holds every data disk"):
        CreateImageParams(instance_id=WEB_1, name=NAME, kind="full-ecs", data_volumes=[DB_1])
    with pytest.raises(ValueError, match="only with the kind full-ecs"):
        CreateImageParams(instance_id=WEB_1, name=NAME, vault_id=VAULT)
    with pytest.raises(ValueError, match="UUID"):
        CreateImageParams(instance_id=WEB_1, name=NAME, kind="full-ecs", vault_id="vault-1")
    assert CreateImageParams(instance_id=WEB_1, name=NAME, kind="full-ecs", vault_id="").vault_id is None
    with pytest.raises(ValueError, match="a full-ECS image made from an ECS cannot be shared"):
        CreateImageParams(instance_id=WEB_1, name=NAME, kind="full-ecs", share_with=["e" * 32])
    schema = CreateImageParams.model_json_schema()["properties"]
    assert "full-ecs" in schema["kind"]["enum"]
    assert "full-ecs:" in schema["kind"]["description"]
    assert schema["vault_id"]["title"] == "CBR vault ID"
    with pytest.raises(ValueError, match="none can be chosen"):
        fleet_params(name_contains="node", kind="full-ecs", data_volumes=[DB_1])
    with pytest.raises(ValueError, match="only with the kind full-ecs"):
        fleet_params(name_contains="node", vault_id=VAULT)


def _whole_post(r: httpx.Request) -> bool:
    return r.method == "POST" and r.url.path.endswith("/v1/cloudimages/wholeimages/action")


# (the moment, applied, images there after the crash, how the re-run reports the image)
CRASHES = [
    pytest.param(crash_at(_whole_post), False, 0, "submitted", id="before-the-post"),
    pytest.param(crash_at(_whole_post), True, 1, "adopted", id="post-applied-answer-lost"),
    pytest.param(crash_after(_whole_post, job_query), True, 1, "resumed", id="while-the-job-runs"),
    pytest.param(crash_after(_whole_post, image_look), True, 1, "resumed", id="after-the-job-succeeded"),
]


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
@pytest.mark.parametrize(("moment", "applied", "there", "how"), CRASHES)
async def test_a_rerun_after_a_crash_makes_exactly_one_image(
    moment: Callable[[], Matcher], applied: bool, there: int, how: str
) -> None:
    cloud = whole_cloud()
    params = FULL.model_copy(update={"instance_id": DB_1, "name": "db-1-full", "stop_if_running": True})
    network = DiesAt(cloud, moment(), applied=applied)
    with cloud_runtime(cloud, network), pytest.raises(Killed):
        await create_image_from_ecs(params)
    assert network.fired
    assert len(images(cloud)) == there

    result = await create(cloud, params)

    assert_one_whole_image(cloud, result, DB_1, "db-1-full")
    assert posts(cloud) == 1, "one POST in all"
    assert result.how == how
    assert power_ops(cloud) == 0
    # And once more: the same image again.
    assert (await create(cloud, params)).image_ids == result.image_ids
    assert len(images(cloud)) == 1


async def test_the_dry_run_says_the_kind_and_that_the_ecs_stays_as_it_is() -> None:
    cloud = whole_cloud()
    params = FULL.model_copy(update={"instance_id": DB_1, "name": "db-1-full", "dry_run": True})
    with cloud_runtime(cloud):
        report = await create_image_from_ecs(params)
    assert isinstance(report, DryRunResult)
    assert report.would == "submit"
    assert report.kind == "full-ecs"
    assert not report.would_stop_ecs
    assert any("one full-ECS image of its system disk and 1 data disk(s)" in n for n in report.notes)
    assert "| image kind | full-ecs |" in report.markdown()
    assert posts(cloud) == 0


async def test_export_refuses_a_full_ecs_image_before_the_call() -> None:
    from flows.lifecycle import ExportImageParams, export_image

    cloud = whole_cloud(buckets=["exports"])
    result = await create(cloud, FULL)
    params = ExportImageParams(image_id=result.image_id, bucket_url="exports:web-1.qcow2")
    with cloud_runtime(cloud), pytest.raises(InvalidRequestError, match="is a full-ECS image") as info:
        await export_image(params)
    assert "--kind system" in (info.value.hint or "")
    assert cloud.stats().get("ims.export_image", 0) == 0, "refused before the POST"


async def test_prune_treats_a_full_ecs_image_as_one_unit() -> None:
    from flows.lifecycle import PruneParams, prune_images

    cloud = whole_cloud()
    older = await create(cloud, FULL)
    newer = await create(cloud, FULL.model_copy(update={"name": f"{NAME}-b"}))
    with cloud_runtime(cloud):
        result = await prune_images(PruneParams(instance_ids=[WEB_1], keep=1, max_age_days=None))
    assert [d.image_id for d in result.deleted] == [older.image_id]
    assert set(cloud.ims.images) == {newer.image_id}


# ------------------------------------------------------------------------------------------------ fleets


def whole_fleet(n: int, disks: int = 2, quota: int = 500) -> LocalCloud:
    """``node-00`` ... running, each with ``disks`` data disks."""
    servers = [
        {
            "id": ecs_id(i),
            "name": f"node-{i:02d}",
            "project": "eu-de",
            "status": "ACTIVE",
            "data_disks": disks,
        }
        for i in range(n)
    ]
    return make_cloud(servers=servers, limits={"image_quota": quota}, vaults=VAULTS)


async def fleet_run(cloud: LocalCloud, **values: Any) -> tuple[Any, FleetResult | None]:
    with cloud_runtime(cloud):
        state = await create_images_for_fleet(
            fleet_params(name_contains="node", kind="full-ecs", vault_id=VAULT, **values), return_state=True
        )
    result = await state.aresult(raise_on_failure=False)
    return state, result if isinstance(result, FleetResult) else None


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
async def test_a_fleet_makes_one_full_ecs_image_per_ecs_counted_once_in_the_quota() -> None:
    # Three ECSs with two data disks each: three new images (one per ECS), for a quota of three.
    cloud = whole_fleet(3, quota=3)
    state, result = await fleet_run(cloud, dry_run=True)
    assert state.is_completed(), state.message
    assert result is not None
    assert result.kind == "full-ecs"
    assert "dry run: 3 images would be made, 0 made already" in (state.message or "")
    assert "image kind full-ecs (one full-ECS image per ECS)" in (state.message or "")
    assert [(r.outcome, r.data_disks) for r in result.rows] == [("would submit", 0)] * 3
    assert posts(cloud) == 0

    state, result = await fleet_run(cloud)
    assert state.is_completed(), state.message
    assert result is not None
    assert [r.outcome for r in result.rows] == ["submitted"] * 3
    assert all(r.data_image_ids == [] for r in result.rows)
    assert len(images(cloud)) == 3
    assert all(i.whole_image for i in images(cloud))
    assert posts(cloud) == 3
    assert power_ops(cloud) == 0

    again, rerun = await fleet_run(cloud)
    assert again.is_completed(), again.message
    assert rerun is not None
    assert [r.outcome for r in rerun.rows] == ["resumed"] * 3
    assert posts(cloud) == 3


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
async def test_a_fleet_that_does_not_fit_the_quota_is_refused() -> None:
    cloud = whole_fleet(3, quota=2)
    state, _ = await fleet_run(cloud)
    assert state.is_failed()
    assert "only 2 of the fleet's 3 new images fit the image quota" in (state.message or "")
    assert posts(cloud) == 0


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
async def test_faults_on_the_full_ecs_call() -> None:
    """The fault rules name the call ``ims.create_whole_image``: a 500 after the cloud applied the POST is
    retried into adopting the one image; a failed job fails the run with the cloud's code, the ECS
    untouched."""
    from imsflow.errors import JobFailedError

    applied = [{"kind": "commit_then_fail", "operation": "ims.create_whole_image", "first": 1}]
    cloud = whole_cloud(faults=applied)
    result = await create(cloud, FULL)
    assert_one_whole_image(cloud, result, WEB_1, NAME)
    assert result.how == "adopted"
    assert cloud.stats()["faults.commit_then_fail"] == 1

    failing = [{"kind": "job_fail", "operation": "ims.create_whole_image", "error_code": "IMG.0126"}]
    cloud = whole_cloud(faults=failing)
    params = FULL.model_copy(update={"instance_id": DB_1, "name": "db-1-full"})
    with pytest.raises(JobFailedError, match=r"IMG\.0126"):
        await create(cloud, params)
    assert [i.status for i in images(cloud)] == ["killed"]
    assert power_ops(cloud) == 0
    assert cloud.ecs.servers[DB_1].status == "ACTIVE"
