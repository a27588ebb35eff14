"""The ``system-and-data`` image kind: the system image, then one data-disk image per data disk, as one set
made by two requests (the API page forbids ``instance_id`` with ``data_images``), each exactly once (the
local cloud in-process, on its virtual clock).

Crash points as in test_power_cycles.py: the process dies (a ``BaseException``: nothing after that moment
runs) at a chosen request of either request's life, before it left or after the cloud applied it, then the
same request runs again on the same result storage; the re-run must end with the same set and no second
image of any member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

import runtime.events
from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from flows.fleet import FleetResult, create_images_for_fleet
from imsflow.client import login
from imsflow.errors import (
    DataDiskError,
    DataVolumeNotFoundError,
    ImageSetIncompleteError,
    InvalidRequestError,
    NoDataDiskError,
)
from localcloud import LocalCloud
from localcloud.ims.state import Image
from runtime.auth import client_for
from runtime.records import SUBMISSIONS
from tasks.image import INSTANCE_TAG, REQUEST_TAG, VOLUME_TAG, data_request_key, made_image, request_key
from tests.flows.test_fleet import ecs_id
from tests.flows.test_fleet import params as fleet_params
from tests.flows.test_power_cycles import _action, _create_post
from tests.support import (
    DB_1,
    PROJECT_ID,
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
    transport_for,
)

NAME = "web-1-20261127"
SET = CreateImageParams(instance_id=WEB_1, name=NAME, kind="system-and-data", tags=["env=prod"])


def disks_cloud(web_disks: int = 2, db_disks: int = 2, **extra: Any) -> LocalCloud:
    """web-1 (stopped) and db-1 (running), each with data disks (``/dev/vdb``, ``/dev/vdc``, ...)."""
    servers = seed_data()["servers"]
    servers[0]["data_disks"] = web_disks
    servers[1]["data_disks"] = db_disks
    return make_cloud(servers=servers, **extra)


def data_volumes(cloud: LocalCloud, server_id: str) -> list[tuple[str, str]]:
    """``(volume ID, device)`` of the data disks of ``server_id``, in device order."""
    return [(v.id, v.device) for v in cloud.ecs.servers[server_id].volumes if not v.is_system]


def images(cloud: LocalCloud) -> list[Image]:
    return list(cloud.ims.images.values())


def tags(image: Image) -> dict[str, str]:
    return dict(tag.split("=", 1) if "=" in tag else tag.split(".", 1) for tag in image.tags)


def posts(cloud: LocalCloud) -> int:
    return cloud.stats().get("ims.create_image", 0)


async def create(cloud: LocalCloud, params: CreateImageParams, network: Any = None) -> CreateImageResult:
    with cloud_runtime(cloud, network):
        result = await create_image_from_ecs(params)
    assert isinstance(result, CreateImageResult)
    return result


def jobs(cloud: LocalCloud) -> list[str]:
    return sorted(j.job_type for j in cloud.ims.jobs.values())


def assert_one_set(cloud: LocalCloud, result: CreateImageResult, server_id: str, name: str) -> None:
    """Exactly the set: one system image, one data image per data disk, all active, each once; the system
    image tagged with the kind's key, the data images with the data request's key (derived from it)."""
    volumes = data_volumes(cloud, server_id)
    key = request_key(server_id, name, kind="system-and-data")
    made = images(cloud)
    assert len(made) == 1 + len(volumes), [i.name for i in made]
    assert all(i.status == "active" for i in made)
    assert sorted(i.id for i in made) == sorted(result.image_ids)
    system = cloud.ims.images[result.image_id]
    assert system.virtual_env_type != "DataImage"
    assert system.name == name
    assert [(d.volume_id, d.name) for d in result.data_images] == [
        (volume, f"{name}-{device.rsplit('/', 1)[-1]}") for volume, device in volumes
    ]
    assert tags(system)[REQUEST_TAG] == key
    for image in made:
        assert tags(image)[INSTANCE_TAG] == server_id
    for data in result.data_images:
        image = cloud.ims.images[data.image_id]
        assert image.virtual_env_type == "DataImage"
        assert tags(image)[VOLUME_TAG] == data.volume_id == image.volume_id
        assert tags(image)[REQUEST_TAG] == data_request_key(key) != key


async def test_a_set_is_the_system_image_and_one_image_per_data_disk_tagged_and_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(runtime.events, "emit_event", lambda **kwargs: emitted.append(kwargs))
    cloud = disks_cloud()
    result = await create(cloud, SET.model_copy(update={"description": "nightly"}))

    assert_one_set(cloud, result, WEB_1, NAME)
    assert [d.name for d in result.data_images] == [f"{NAME}-vdb", f"{NAME}-vdc"]
    assert posts(cloud) == 2, "two POSTs: the system-disk image, then the data-disk images"
    assert jobs(cloud) == ["imsCreateImageByInstance", "imsVolumesToSysDataImagesJob"]
    assert result.how == "submitted"
    assert result.kind == "system-and-data"
    for image in images(cloud):
        assert image.description == "nightly"
        assert tags(image)["env"] == "prod"
    assert {
        "plan-images",
        "check-ecs-stopped",
        "submit-image",
        "poll-job",
        "submit-data-images",
        "poll-data-job",
    } <= set(result.seconds)
    # A set and a system image of the same ECS and name are two requests; the system key is unchanged.
    assert request_key(WEB_1, NAME, kind="system-and-data") != request_key(WEB_1, NAME)
    assert request_key(WEB_1, NAME, kind="system") == request_key(WEB_1, NAME)
    # The created event names the whole set: an automation on it sees every image, not the system one alone.
    (created,) = [e for e in emitted if e["event"] == "imsflow.image.created"]
    assert created["payload"]["kind"] == "system-and-data"
    assert created["payload"]["data_image_ids"] == [d.image_id for d in result.data_images]
    related = {r["prefect.resource.id"] for r in created["related"]}
    assert {f"imsflow.image.{i}" for i in result.image_ids} <= related

    again = await create(cloud, SET)
    assert again.how == "resumed"
    assert again.image_ids == result.image_ids
    assert posts(cloud) == 2


async def test_data_volumes_choose_the_disks() -> None:
    cloud = disks_cloud(web_disks=3)
    (_, _), (vdc, _), (_, _) = data_volumes(cloud, WEB_1)
    result = await create(cloud, SET.model_copy(update={"data_volumes": [vdc]}))

    assert [(d.volume_id, d.name) for d in result.data_images] == [(vdc, f"{NAME}-vdc")]
    assert len(images(cloud)) == 2
    key = request_key(WEB_1, NAME, kind="system-and-data", data_volumes=[vdc])
    assert tags(cloud.ims.images[result.image_id])[REQUEST_TAG] == key
    assert tags(cloud.ims.images[result.data_images[0].image_id])[REQUEST_TAG] == data_request_key(key)
    assert key != request_key(WEB_1, NAME, kind="system-and-data")


async def test_no_data_disk_is_refused_before_anything_is_stopped_or_posted() -> None:
    cloud = disks_cloud(web_disks=0, db_disks=0)
    with pytest.raises(NoDataDiskError, match=r"ECS web-1 .* has no data disk"):
        await create(cloud, SET)
    running = CreateImageParams(instance_id=DB_1, name="db-1-x", kind="system-and-data", stop_if_running=True)
    with pytest.raises(NoDataDiskError, match="db-1"):
        await create(cloud, running)
    assert posts(cloud) == 0
    assert cloud.stats().get("ecs.stop_servers", 0) == 0, "refused before the ECS was stopped"
    assert images(cloud) == []


async def test_a_volume_that_is_no_data_disk_of_the_ecs_is_refused_before_any_post() -> None:
    cloud = disks_cloud()
    (theirs, _), _ = data_volumes(cloud, DB_1)
    with pytest.raises(DataVolumeNotFoundError, match=f"not a data disk of ECS web-1.*{theirs}"):
        await create(cloud, SET.model_copy(update={"data_volumes": [theirs]}))
    system = next(v.id for v in cloud.ecs.servers[WEB_1].volumes if v.is_system)
    with pytest.raises(DataVolumeNotFoundError, match="its system disk"):
        await create(cloud, SET.model_copy(update={"data_volumes": [system]}))
    assert posts(cloud) == 0
    assert images(cloud) == []


def test_the_form_checks_kind_volumes_and_tag_room() -> None:
    with pytest.raises(ValueError, match="system-and-data"):
        CreateImageParams(instance_id=WEB_1, name=NAME, kind="whole")
    with pytest.raises(ValueError, match="UUID"):
        CreateImageParams(instance_id=WEB_1, name=NAME, kind="system-and-data", data_volumes=["vdb"])
    with pytest.raises(ValueError, match="only with the kind system-and-data"):
        CreateImageParams(instance_id=WEB_1, name=NAME, data_volumes=[DB_1])
    eight = [f"t{i}=v" for i in range(8)]
    CreateImageParams(instance_id=WEB_1, name=NAME, tags=eight)  # a system image: room for eight
    with pytest.raises(ValueError, match="at most 7 tags"):
        CreateImageParams(instance_id=WEB_1, name=NAME, kind="system-and-data", tags=eight)
    schema = CreateImageParams.model_json_schema()["properties"]
    assert schema["kind"]["enum"] == ["system", "system-and-data", "full-ecs"]
    assert schema["kind"]["title"] == "Image kind"
    assert "data-disk image" in schema["kind"]["description"]
    assert schema["data_volumes"]["title"] == "Data disks"
    # Both refusals are one family of the error tree, apart from a field's rule.
    assert issubclass(DataVolumeNotFoundError, DataDiskError)
    assert issubclass(NoDataDiskError, DataDiskError)
    assert not issubclass(DataDiskError, InvalidRequestError)


def _system_post(r: httpx.Request) -> bool:
    return _create_post(r) and '"instance_id"' in r.content.decode()


def _data_post(r: httpx.Request) -> bool:
    return _create_post(r) and '"data_images"' in r.content.decode()


# (the moment, applied, images there after the crash, how the re-run reports the set)
CRASHES = [
    pytest.param(crash_at(_system_post), False, 0, "submitted", id="before-the-system-post"),
    pytest.param(crash_at(_system_post), True, 1, "submitted", id="system-post-applied-answer-lost"),
    pytest.param(crash_after(_system_post, job_query), True, 1, "submitted", id="while-the-system-job-runs"),
    pytest.param(crash_at(_data_post), False, 1, "submitted", id="system-done-data-not-yet-submitted"),
    pytest.param(crash_at(_data_post), True, 3, "adopted", id="data-post-applied-answer-lost"),
    pytest.param(crash_after(_data_post, job_query), True, 3, "resumed", id="while-the-data-job-runs"),
    pytest.param(crash_after(_data_post, image_look), True, 3, "resumed", id="after-both-succeeded"),
]


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
@pytest.mark.parametrize(("moment", "applied", "there", "how"), CRASHES)
async def test_a_rerun_after_a_crash_makes_the_same_set_and_no_duplicate(
    moment: Callable[[], Matcher], applied: bool, there: int, how: str
) -> None:
    cloud = disks_cloud()
    network = DiesAt(cloud, moment(), applied=applied)
    with cloud_runtime(cloud, network), pytest.raises(Killed):
        await create_image_from_ecs(SET)
    assert network.fired
    assert len(images(cloud)) == there

    result = await create(cloud, SET)

    assert_one_set(cloud, result, WEB_1, NAME)
    assert posts(cloud) == 2, "each request once"
    assert jobs(cloud) == ["imsCreateImageByInstance", "imsVolumesToSysDataImagesJob"]
    assert result.how == how
    # And once more, after all: the same set again.
    assert (await create(cloud, SET)).image_ids == result.image_ids
    assert len(images(cloud)) == 3


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
async def test_a_set_made_before_a_crash_costs_no_power_cycle_on_the_rerun() -> None:
    cloud = disks_cloud()
    params = CreateImageParams(
        instance_id=DB_1, name="db-1-set", kind="system-and-data", stop_if_running=True
    )
    network = DiesAt(cloud, _action("os-start"), applied=False)
    with cloud_runtime(cloud, network), pytest.raises(Killed):
        await create_image_from_ecs(params)
    assert cloud.stats()["ecs.stop_servers"] == 1
    assert cloud.ecs.servers[DB_1].status == "SHUTOFF", "the start never left"
    result = await create(cloud, params)
    assert_one_set(cloud, result, DB_1, "db-1-set")
    assert cloud.stats()["ecs.stop_servers"] == 1, "the set is made: no second stop"
    assert cloud.stats()["ecs.start_servers"] == 1
    assert cloud.ecs.servers[DB_1].status == "ACTIVE"


# ------------------------------------------------------------------------------------------------ fleets


def disks_fleet(n: int, disks: int = 2, quota: int = 500) -> LocalCloud:
    """``node-00`` ... stopped, each with ``disks`` data disks."""
    servers = [
        {
            "id": ecs_id(i),
            "name": f"node-{i:02d}",
            "project": "eu-de",
            "status": "SHUTOFF",
            "data_disks": disks,
        }
        for i in range(n)
    ]
    return make_cloud(servers=servers, limits={"image_quota": quota})


async def fleet_run(cloud: LocalCloud, **values: Any) -> tuple[Any, FleetResult | None]:
    with cloud_runtime(cloud):
        state = await create_images_for_fleet(
            fleet_params(name_contains="node", kind="system-and-data", **values), return_state=True
        )
    result = await state.aresult(raise_on_failure=False)
    return state, result if isinstance(result, FleetResult) else None


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
async def test_a_fleet_of_three_makes_one_set_per_ecs_and_a_rerun_adopts_them() -> None:
    cloud = disks_fleet(3)
    state, result = await fleet_run(cloud)
    assert state.is_completed(), state.message
    assert result is not None
    assert [r.outcome for r in result.rows] == ["submitted"] * 3
    for row in result.rows:
        volumes = [v for v, _ in data_volumes(cloud, row.instance_id)]
        assert len(row.data_image_ids) == 2
        assert row.image_id is not None
        members = [cloud.ims.images[i] for i in [row.image_id, *row.data_image_ids]]
        key = request_key(row.instance_id, row.image_name, kind="system-and-data")
        assert tags(members[0])[REQUEST_TAG] == key
        assert all(tags(i)[REQUEST_TAG] == data_request_key(key) for i in members[1:])
        assert [tags(i)[VOLUME_TAG] for i in members[1:]] == volumes
        assert [i.name for i in members] == [row.image_name, f"{row.image_name}-vdb", f"{row.image_name}-vdc"]
    assert len(images(cloud)) == 9
    assert posts(cloud) == 6

    again, rerun = await fleet_run(cloud)
    assert again.is_completed(), again.message
    assert rerun is not None
    assert [r.outcome for r in rerun.rows] == ["resumed"] * 3
    assert [r.data_image_ids for r in rerun.rows] == [r.data_image_ids for r in result.rows]
    assert len(images(cloud)) == 9
    assert posts(cloud) == 6


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
async def test_a_fleet_with_data_volumes_images_each_ecs_its_chosen_disks() -> None:
    cloud = disks_fleet(2)
    (first_vdc, _) = data_volumes(cloud, ecs_id(0))[1]
    (second_vdb, _) = data_volumes(cloud, ecs_id(1))[0]
    state, result = await fleet_run(cloud, data_volumes=[first_vdc, second_vdb])
    assert state.is_completed(), state.message
    assert result is not None
    got = [[tags(cloud.ims.images[i])[VOLUME_TAG] for i in r.data_image_ids] for r in result.rows]
    assert got == [[first_vdc], [second_vdb]]

    # A volume no ECS of the fleet has: the fleet is refused before any POST.
    state, _ = await fleet_run(disks_fleet(2), data_volumes=[DB_1])
    assert state.is_failed()
    assert "not a data disk of any ECS of the fleet" in (state.message or "")


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
async def test_the_quota_counts_every_image_of_a_set() -> None:
    # Three ECSs with two data disks each: nine new images, for a quota of seven.
    cloud = disks_fleet(3, quota=7)
    state, result = await fleet_run(cloud, dry_run=True)
    assert state.is_completed()
    assert result is not None
    assert "dry run: 9 images would be made, 0 made already" in (state.message or "")
    assert [(r.outcome, r.data_disks) for r in result.rows] == [("would submit", 2)] * 3
    assert "this fleet makes 9 new images; a real run would refuse: only 7 of the fleet's 9 new images" in (
        state.message or ""
    )
    assert posts(cloud) == 0

    state, _ = await fleet_run(cloud)
    assert state.is_failed()
    assert "only 7 of the fleet's 9 new images fit the image quota (0 of 7 used)" in (state.message or "")
    assert posts(cloud) == 0

    state, result = await fleet_run(cloud, fit_quota=True)
    assert state.is_completed(), state.message
    assert result is not None
    assert [r.outcome for r in result.rows] == ["submitted", "submitted", "skipped"]
    assert len(images(cloud)) == 6


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
async def test_a_set_missing_a_member_is_neither_made_again_nor_taken_for_made() -> None:
    cloud = disks_cloud()
    result = await create(cloud, SET)
    key = request_key(WEB_1, NAME, kind="system-and-data")
    # The jobs' records are gone (another result storage), and a data image was deleted by hand.
    await SUBMISSIONS.delete(key)
    await SUBMISSIONS.delete(data_request_key(key))
    lost = result.data_images[1]
    cloud.ims.delete_image(PROJECT_ID, lost.image_id)
    volumes = [d.volume_id for d in result.data_images if d.volume_id is not None]

    with cloud_runtime(cloud) as settings:
        token = await login(settings, transport_for(cloud))
        async with client_for(token) as client:
            assert await made_image(client, key, volumes) is None, "a set is made only with every member"
            made = await made_image(client, key, volumes[:1])
            assert made is not None
            assert made.image_ids == [result.image_id, result.data_images[0].image_id]
        with pytest.raises(ImageSetIncompleteError, match=f"lacks the image of volume {lost.volume_id}"):
            await create_image_from_ecs(SET)
    assert posts(cloud) == 2, "no second image of the members still there"
    assert len(images(cloud)) == 2


async def test_prune_deletes_a_set_whole_never_a_system_image_without_its_data_images() -> None:
    """Two sets of web-1 as the pipeline tags them; keep 1: the older set goes, all three of its images, and
    the newer one stays whole (retention ranks sets, not images: tasks.lifecycle.image_sets)."""
    from flows.lifecycle import PruneParams, prune_images

    cloud = disks_cloud()
    older = await create(cloud, SET)
    newer = await create(cloud, SET.model_copy(update={"name": f"{NAME}-b"}))
    with cloud_runtime(cloud):
        result = await prune_images(PruneParams(instance_ids=[WEB_1], keep=1, max_age_days=None))
    assert {d.image_id for d in result.deleted} == set(older.image_ids)
    assert set(cloud.ims.images) == set(newer.image_ids)
    assert len(newer.image_ids) == 3
