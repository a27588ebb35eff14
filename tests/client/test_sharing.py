"""The sharing calls of the client, from the pages' examples: ims_apis/image_sharing/*.rst (add, delete,
update members), the job page's member jobs and the Glance members page; the sharing error codes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from imsflow.errors import (
    ImageNotFoundError,
    ImageNotShareableError,
    InvalidRequestError,
    ShareLimitError,
    UnsupportedOperationError,
    error_for,
)
from imsflow.models import ImageMembersRequest, ImsJob, UpdateImageMembersRequest
from imsflow.validation import PROJECT_ID_RULE

from .test_client import Cloud, client_for

IMAGES = ["d164b5df-1bc3-4c3f-893e-3e471fd16e64", "0b680482-acaa-4045-b14c-9a8c7dfe9c70"]
PROJECTS = ["9c61004714024f9586705d090530f9fa", "edc89b490d7d4392898e19b2deb34797"]
JOB = {"job_id": "edc89b490d7d4392898e19b2deb34797"}  # the pages' example response

# The Glance members page's example response.
MEMBERS_PAGE: dict[str, Any] = {
    "members": [
        {
            "status": "accepted",
            "created_at": "2016-09-01T02:05:14Z",
            "updated_at": "2016-09-01T02:37:11Z",
            "image_id": "d164b5df-1bc3-4c3f-893e-3e471fd16e64",
            "member_id": "edc89b490d7d4392898e19b2deb34797",
            "schema": "/v2/schemas/member",
        }
    ],
    "schema": "/v2/schemas/members",
}

# The job page: "If the job_type is imsAddImageMembersJob".
ADD_JOB: dict[str, Any] = {
    "job_id": "9a175ac692fa12540193002a6d4b2720",
    "job_type": "imsAddImageMembersJob",
    "begin_time": "2024-11-06T06:30:00.778Z",
    "end_time": "2024-11-06T06:30:03.179Z",
    "status": "SUCCESS",
    "error_code": None,
    "fail_reason": None,
    "entities": {"results": [{"image_id": "30e55148-deb9-4923-adb9-91618de16ba0", "status": "success"}]},
}


@pytest.fixture
def cloud() -> Cloud:
    return Cloud()


async def test_add_members_sends_the_page_example(cloud: Cloud) -> None:
    cloud.on("POST", "/v1/cloudimages/members", 200, JOB)
    async with client_for(cloud) as client:
        job_id = await client.ims.add_image_members(ImageMembersRequest(images=IMAGES, projects=PROJECTS))
    assert job_id == JOB["job_id"]
    assert cloud.requests[-1].method == "POST"
    assert cloud.body() == {"images": IMAGES, "projects": PROJECTS}


async def test_remove_members_sends_the_page_example(cloud: Cloud) -> None:
    cloud.on("DELETE", "/v1/cloudimages/members", 200, JOB)
    async with client_for(cloud) as client:
        job_id = await client.ims.remove_image_members(ImageMembersRequest(images=IMAGES, projects=PROJECTS))
    assert job_id == JOB["job_id"]
    assert cloud.body() == {"images": IMAGES, "projects": PROJECTS}


@pytest.mark.parametrize("vault", [None, "d14r5tef-1bc3-4c4f-823e-3e471rg65e65"])
async def test_update_members_sends_the_page_examples(cloud: Cloud, vault: str | None) -> None:
    cloud.on("PUT", "/v1/cloudimages/members", 200, JOB)
    req = UpdateImageMembersRequest(images=IMAGES, project_id=PROJECTS[1], status="accepted", vault_id=vault)
    async with client_for(cloud) as client:
        assert await client.ims.update_image_members(req) == JOB["job_id"]
    expected: dict[str, Any] = {"images": IMAGES, "project_id": PROJECTS[1], "status": "accepted"}
    if vault:
        expected["vault_id"] = vault
    assert cloud.body() == expected


async def test_list_members_reads_the_page_example(cloud: Cloud) -> None:
    cloud.on("GET", f"/v2/images/{IMAGES[0]}/members", 200, MEMBERS_PAGE)
    async with client_for(cloud) as client:
        members = await client.ims.list_image_members(IMAGES[0])
    assert members.status_of(PROJECTS[1]) == "accepted"
    assert members.status_of(PROJECTS[0]) is None
    assert members.members[0].created_at is not None


async def test_members_of_a_missing_image(cloud: Cloud) -> None:
    cloud.on("GET", f"/v2/images/{IMAGES[0]}/members", 404, {"error": {"code": "X", "message": "gone"}})
    async with client_for(cloud) as client:
        with pytest.raises(ImageNotFoundError):
            await client.ims.list_image_members(IMAGES[0])


def test_member_job_from_the_job_page() -> None:
    job = ImsJob.model_validate(ADD_JOB)
    assert job.status == "SUCCESS"
    assert job.entities.results[0].status == "success"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"images": [], "projects": PROJECTS}, "images"),
        ({"images": IMAGES, "projects": []}, "projects"),
        ({"images": ["not-a-uuid"], "projects": PROJECTS}, "image_id"),
        ({"images": IMAGES, "projects": ["eu-de"]}, "project_id"),
    ],
)
def test_requests_refuse_what_the_pages_do_not_allow(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises((InvalidRequestError, ValueError)) as info:
        ImageMembersRequest(**kwargs)
    assert field in str(info.value)


def test_a_project_name_is_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="32 lowercase hex"):
        UpdateImageMembersRequest(images=IMAGES, project_id="eu-de", status="accepted")
    assert "project ID" in PROJECT_ID_RULE


def test_update_status_is_accepted_or_rejected() -> None:
    with pytest.raises(ValueError):
        UpdateImageMembersRequest(images=IMAGES, project_id=PROJECTS[0], status="pending")


def test_repeated_ids_are_sent_once() -> None:
    req = ImageMembersRequest(images=[IMAGES[0], IMAGES[0]], projects=PROJECTS)
    assert req.to_body()["images"] == [IMAGES[0]]


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("IMG.0076", ImageNotShareableError),
        ("IMG.0089", ImageNotShareableError),
        ("IMG.0098", ImageNotShareableError),
        ("IMG.0135", ImageNotShareableError),
        ("IMG.0088", ShareLimitError),
    ],
)
def test_sharing_codes(code: str, cls: type) -> None:
    error = error_for(400, code, "m", "https://ims/v1/cloudimages/members")
    assert type(error) is cls
    assert error.hint
    if cls is ImageNotShareableError:
        assert isinstance(error, UnsupportedOperationError)


async def test_an_error_answer_is_raised_with_its_class(cloud: Cloud) -> None:
    body = {"error": {"code": "IMG.0076", "message": "You cannot share an image with yourself."}}
    cloud.on("POST", "/v1/cloudimages/members", 400, body)
    async with client_for(cloud) as client:
        with pytest.raises(ImageNotShareableError, match=r"IMG\.0076"):
            await client.ims.add_image_members(ImageMembersRequest(images=IMAGES, projects=PROJECTS))
    assert isinstance(cloud.requests[-1], httpx.Request)
