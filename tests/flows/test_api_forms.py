"""The flows on documented API forms only: a stale submission record, an image gone with a bare 404, a fleet
selected by several tags, and failure messages that carry the cloud's request ID."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import runtime
from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from flows.fleet import FleetParams, FleetResult, create_images_for_fleet
from flows.lifecycle import DeleteImageParams, delete_image
from localcloud.seed import FaultRuleSeed
from runtime.records import SUBMISSIONS, Submission
from tasks.image import REQUEST_TAG, request_key
from tests.support import (
    PROJECT_ID,
    WEB_1,
    CloudNetwork,
    cloud_runtime,
    make_cloud,
    seed_data,
    settings_for,
)

UNKNOWN_JOB = "f" * 32
IMAGE_ID = "1a2b3c4d-0000-4000-8000-000000000404"


async def _record_unknown_job(key: str) -> None:
    # A submission record from long ago: its job has expired (or never was on this cloud).
    record = Submission(request_key=key, job_id=UNKNOWN_JOB, submitted_at=datetime.now(UTC))
    await SUBMISSIONS.put(key, record)


def _queries_of_the_unknown_job(network: CloudNetwork) -> int:
    return len(network.calls_to("GET", f"/jobs/{UNKNOWN_JOB}")) + len(
        network.calls_to("GET", f"/job/{UNKNOWN_JOB}")
    )


# --------------------------------------------------------------------------------- stale record, unknown job


async def test_a_record_of_an_unknown_job_moves_on_to_a_new_submission() -> None:
    cloud = make_cloud()
    network = CloudNetwork(cloud)
    params = CreateImageParams(instance_id=WEB_1, name="web-1-stale")
    await _record_unknown_job(request_key(WEB_1, params.name))
    with cloud_runtime(cloud, network):
        result = await create_image_from_ecs(params)
        assert isinstance(result, CreateImageResult)

    assert result.how == "submitted"
    assert cloud.ims.images[result.image_id].status == "active"
    assert cloud.stats()["ims.create_image"] == 1
    # IMG.0023 (or Common.0011 on one base URL) is JobNotFoundError: asked once, never retried.
    assert _queries_of_the_unknown_job(network) == 1


async def test_a_record_of_an_unknown_job_adopts_the_tagged_image() -> None:
    name = "web-1-stale-adopt"
    key = request_key(WEB_1, name)
    image = {
        "id": IMAGE_ID,
        "name": name,
        "project": "eu-de",
        "tags": [f"{REQUEST_TAG}.{key}"],  # made in the "Key.Value" form, found by the "Key=Value" query
    }
    cloud = make_cloud(images=[image])
    network = CloudNetwork(cloud)
    await _record_unknown_job(key)
    with cloud_runtime(cloud, network):
        result = await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name=name))
        assert isinstance(result, CreateImageResult)

    assert result.how == "adopted"
    assert result.image_id == IMAGE_ID
    assert cloud.stats().get("ims.create_image", 0) == 0
    assert _queries_of_the_unknown_job(network) == 1


@pytest.mark.parametrize("job_api", ["project-jobs", "cloudimages-job"])
async def test_create_image_on_either_ims_job_path(job_api: str) -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud, ims_job_api=job_api):
        result = await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name=f"web-1-{job_api}"))
        assert isinstance(result, CreateImageResult)
    assert cloud.ims.images[result.image_id].status == "active"
    stats = cloud.stats()
    used, unused = (
        ("ims.show_job_progress", "ims.show_job")
        if job_api == "cloudimages-job"
        else ("ims.show_job", "ims.show_job_progress")
    )
    assert stats.get(used, 0) >= 1
    assert stats.get(unused, 0) == 0


# ------------------------------------------------------------------------------------ image gone: bare 404


IMAGE_BODY = {"id": IMAGE_ID, "name": "old-one", "status": "active"}
BARE_404 = (404, None)
HTML_404 = (404, "<html>Not Found</html>")
ACTIVE = (200, IMAGE_BODY)


def _response(answer: tuple[int, Any]) -> httpx.Response:
    status, body = answer
    if body is None:
        return httpx.Response(status)
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers={"Content-Type": "text/html"})
    return httpx.Response(status, json=body)


def _glance(gets: list[tuple[int, Any]], delete: tuple[int, Any]) -> httpx.MockTransport:
    """GET answers in turn (the last one repeats); DELETE answers ``delete``."""
    pending = list(gets)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return _response(delete)
        return _response(pending.pop(0) if len(pending) > 1 else pending[0])

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("gets", "delete", "outcome"),
    [
        ([BARE_404], (204, None), "already-gone"),
        ([HTML_404], (204, None), "already-gone"),
        ([ACTIVE], BARE_404, "already-gone"),
        ([ACTIVE, BARE_404], (204, None), "deleted"),
    ],
    ids=["gone-before", "gone-before-html", "gone-at-delete", "deleted-then-404"],
)
async def test_delete_treats_a_bare_404_as_gone(
    gets: list[tuple[int, Any]], delete: tuple[int, Any], outcome: str
) -> None:
    # AK/SK: the flow needs no IAM call, so the mock only plays IMS.
    settings = settings_for(access_key="AK", secret_key="SK", project_id=PROJECT_ID)

    async def no_sleep(seconds: float) -> None:
        return None

    transport = _glance(gets, delete)
    with runtime.use_runtime(settings_factory=lambda: settings, transport=transport, sleep=no_sleep):
        result = await delete_image(DeleteImageParams(image_id=IMAGE_ID))
    assert result.outcome == outcome


# -------------------------------------------------------------------------------------- fleet by two tags


async def test_fleet_by_two_tags_selects_only_servers_with_both() -> None:
    both = "6f1c2d7e-0000-4000-8000-000000000201"
    first_only = "6f1c2d7e-0000-4000-8000-000000000202"
    servers: list[dict[str, Any]] = [
        {"id": both, "name": "both", "project": "eu-de", "status": "SHUTOFF", "tags": ["a=1", "b=2"]},
        {"id": first_only, "name": "first", "project": "eu-de", "status": "SHUTOFF", "tags": ["a=1"]},
    ]
    cloud = make_cloud(**{**seed_data(servers=servers), "limits": {"image_quota": 50}})
    params = FleetParams(tags=["a=1", "b=2"], requests_per_second=1000)
    with cloud_runtime(cloud):
        state = await create_images_for_fleet(params, return_state=True)
    result = await state.aresult(raise_on_failure=False)
    assert isinstance(result, FleetResult)
    assert [(r.instance_id, r.outcome) for r in result.rows] == [(both, "submitted")]


# ------------------------------------------------------------------------------- request IDs in failures


async def test_failed_run_message_carries_the_request_id() -> None:
    cloud = make_cloud()
    cloud.faults.add(
        FaultRuleSeed.model_validate(
            {
                "kind": "job_fail",
                "operation": "ims.create_image",
                "error_code": "IMG.0037",
                "fail_reason": "x",
            }
        )
    )
    with cloud_runtime(cloud):
        state = await create_image_from_ecs(
            CreateImageParams(instance_id=WEB_1, name="web-1-fails"), return_state=True
        )
    assert state.is_failed()
    assert "IMG.0037" in (state.message or "")
    assert "[request id " in (state.message or "")
