"""No needless power cycles: a re-run never stops an ECS whose image is made already (issue 12, item 3).

A run with ``stop_if_running`` on a running ECS dies (as with SIGKILL: nothing after that moment runs, no
``except Exception`` sees it) at a chosen request, then the same request runs again on the same result
storage. The local cloud counts every stop and start request (``cloud.stats()``): the re-run adds no stop,
only the start the ECS still needs, and no image.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from localcloud import LocalCloud
from runtime.records import POWER
from tests.support import DB_1, DiesAt, Killed, Matcher, cloud_runtime, image_look, make_cloud

#: Many flow runs per test: the full run (CI), not the quick loop.
pytestmark = pytest.mark.slow


def _action(kind: str) -> Matcher:
    return lambda r: (
        r.method == "POST" and r.url.path.endswith("/cloudservers/action") and kind in r.content.decode()
    )


def _create_post(r: httpx.Request) -> bool:
    return r.method == "POST" and r.url.path.endswith("/v2/cloudimages/action")


PARAMS = CreateImageParams(instance_id=DB_1, name="db-1-golden", stop_if_running=True)


def _power_calls(cloud: LocalCloud) -> tuple[int, int]:
    stats = cloud.stats()
    return stats["ecs.stop_servers"], stats["ecs.start_servers"]


async def _killed_run(cloud: LocalCloud, matches: Matcher, *, applied: bool) -> DiesAt:
    network = DiesAt(cloud, matches, applied=applied)
    with cloud_runtime(cloud, network), pytest.raises(Killed):
        await create_image_from_ecs(PARAMS)
    assert network.fired
    return network


async def _rerun(cloud: LocalCloud) -> CreateImageResult:
    with cloud_runtime(cloud):
        result = await create_image_from_ecs(PARAMS)
    assert isinstance(result, CreateImageResult)
    return result


def _assert_one_active_image_and_running(cloud: LocalCloud, result: CreateImageResult) -> None:
    assert [(i.id, i.status) for i in cloud.ims.images.values()] == [(result.image_id, "active")]
    assert cloud.stats()["ims.create_image"] == 1
    assert cloud.ecs.servers[DB_1].status == "ACTIVE"
    assert cloud.ecs.servers[DB_1].task_state is None


@pytest.mark.parametrize("started_meanwhile", [False, True], ids=["powering-on", "running-again"])
async def test_start_sent_then_died_rerun_neither_stops_nor_starts(started_meanwhile: bool) -> None:
    cloud = make_cloud()
    await _killed_run(cloud, _action("os-start"), applied=True)
    assert _power_calls(cloud) == (1, 1)
    record = await POWER.get(DB_1)
    assert record is not None
    assert (record.stopped_by_imsflow, record.start_sent) == (True, True)
    if started_meanwhile:
        cloud.advance(60)  # the start (10 s) ends before the re-run
    else:
        assert cloud.ecs.servers[DB_1].task_state == "powering-on"

    result = await _rerun(cloud)

    assert _power_calls(cloud) == (1, 1), "the re-run must neither stop the ECS again nor start it twice"
    assert result.how == "resumed"
    _assert_one_active_image_and_running(cloud, result)
    record = await POWER.get(DB_1)
    assert record is not None
    assert (record.stopped_by_imsflow, record.start_sent) == (False, False), "the record is cleared"


@pytest.mark.parametrize(
    ("moment", "applied", "start_recorded"),
    [(_action("os-start"), False, True), (image_look, True, False)],
    ids=["before-the-start-post", "while-poll-job-saw-the-image"],
)
async def test_image_active_start_never_sent_rerun_starts_once(
    moment: Matcher, applied: bool, start_recorded: bool
) -> None:
    cloud = make_cloud()
    await _killed_run(cloud, moment, applied=applied)
    assert _power_calls(cloud) == (1, 0)
    assert cloud.ecs.servers[DB_1].status == "SHUTOFF"
    assert [i.status for i in cloud.ims.images.values()] == ["active"]
    record = await POWER.get(DB_1)
    assert record is not None
    assert (record.stopped_by_imsflow, record.start_sent) == (True, start_recorded)

    result = await _rerun(cloud)

    assert _power_calls(cloud) == (1, 1), "no second stop; the one start the ECS is owed"
    assert result.how == "resumed"
    _assert_one_active_image_and_running(cloud, result)


@pytest.mark.parametrize(
    ("moment", "applied", "status_at_rerun"),
    [(_action("os-stop"), True, "ACTIVE"), (_create_post, False, "SHUTOFF")],
    ids=["right-after-the-stop-post", "before-the-create-post"],
)
async def test_nothing_submitted_rerun_finishes_the_one_stop(
    moment: Matcher, applied: bool, status_at_rerun: str
) -> None:
    # ACTIVE: still powering off (status ACTIVE, task powering-off) when the re-run looks.
    cloud = make_cloud()
    await _killed_run(cloud, moment, applied=applied)
    assert _power_calls(cloud) == (1, 0)
    assert cloud.stats()["ims.create_image"] == 0
    assert cloud.ecs.servers[DB_1].status == status_at_rerun

    result = await _rerun(cloud)

    assert _power_calls(cloud) == (1, 1), "the killed run's stop is the only one; one start after the image"
    assert result.how == "submitted"
    _assert_one_active_image_and_running(cloud, result)


async def test_rerun_of_a_finished_request_leaves_the_ecs_alone() -> None:
    cloud = make_cloud()
    first = await _rerun(cloud)
    assert _power_calls(cloud) == (1, 1)

    second = await _rerun(cloud)

    assert _power_calls(cloud) == (1, 1), "the image is there: no power cycle for a re-run"
    assert second.image_id == first.image_id
    _assert_one_active_image_and_running(cloud, second)


async def test_rerun_without_stop_if_running_returns_the_made_image() -> None:
    # A running ECS is refused only while its image is still to be made.
    cloud = make_cloud()
    first = await _rerun(cloud)
    with cloud_runtime(cloud):
        second: Any = await create_image_from_ecs(PARAMS.model_copy(update={"stop_if_running": False}))
    assert isinstance(second, CreateImageResult)
    assert second.image_id == first.image_id
    assert _power_calls(cloud) == (1, 1)
