"""The replication and tagging calls of the client, from the pages' examples:
replicating_an_image_within_a_region.rst, adding_or_deleting_image_tags_in_a_batch.rst, the job page
(``imsCopyImageInRegionJob``) and the replication error codes."""

from __future__ import annotations

from typing import Any

import pytest

from imsflow.errors import (
    ImageNotFoundError,
    ImageNotReplicableError,
    InvalidRequestError,
    NotFoundError,
    UnsupportedOperationError,
    WholeImageNotExportableError,
    error_for,
)
from imsflow.models import CopyImageRequest, Image, ImageTag, ImageTagsRequest, ImsJob, build_request

from .conftest import PROJECT_ID
from .test_client import Cloud, client_for

IMAGE = "465076de-dc36-4aec-80f5-ef9d8009428f"  # the page's example
CMK = "bd66288c-9081-460a-8227-4cbd0c814cb4"
JOB = {"job_id": "edc89b490d7d4392898e19b2deb34797"}  # the page's example response


@pytest.fixture
def cloud() -> Cloud:
    return Cloud()


async def test_copy_sends_the_page_example(cloud: Cloud) -> None:
    cloud.on("POST", f"/v1/cloudimages/{IMAGE}/copy", 200, JOB)
    req = CopyImageRequest(name="ims_encrypted_copy3", description="test copy", cmk_id=CMK)
    async with client_for(cloud) as client:
        assert await client.ims.copy_image(IMAGE, req) == JOB["job_id"]
    assert cloud.requests[-1].method == "POST"
    assert cloud.body() == {"name": "ims_encrypted_copy3", "description": "test copy", "cmk_id": CMK}


def test_blank_values_are_not_sent() -> None:
    req = CopyImageRequest(name="copy", description=None, cmk_id="", enterprise_project_id="")
    assert req.to_body() == {"name": "copy"}
    assert CopyImageRequest(name="copy", enterprise_project_id="0").to_body()["enterprise_project_id"] == "0"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "bad/name"}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "ok", "description": "a <b>"}, "description"),
        ({"name": "ok", "description": "x" * 1025}, "description"),
        ({"name": "ok", "cmk_id": "my-key"}, "cmk_id"),
        ({"name": "ok", "enterprise_project_id": "marketing"}, "enterprise_project_id"),
        ({"name": "ok", "tags": ["a.b"]}, "tags"),  # the copy takes no tags
    ],
)
def test_the_pages_rules_before_any_call(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        build_request(CopyImageRequest, **kwargs)
    assert field in str(info.value)


async def test_copy_of_a_missing_image(cloud: Cloud) -> None:
    body = {"error": {"code": "IMG.0144", "message": "The image does not exist."}}
    cloud.on("POST", f"/v1/cloudimages/{IMAGE}/copy", 404, body)
    async with client_for(cloud) as client:
        with pytest.raises(ImageNotFoundError):
            await client.ims.copy_image(IMAGE, CopyImageRequest(name="copy"))


async def test_a_full_ecs_image_is_refused_with_its_class(cloud: Cloud) -> None:
    body = {"error": {"code": "IMG.0130", "message": "The full-ECS image cannot be exported or replicated."}}
    cloud.on("POST", f"/v1/cloudimages/{IMAGE}/copy", 400, body)
    async with client_for(cloud) as client:
        # IMG.0130 "cannot be exported or replicated": one class for both (its hint says so)
        with pytest.raises(WholeImageNotExportableError, match=r"IMG\.0130") as info:
            await client.ims.copy_image(IMAGE, CopyImageRequest(name="copy"))
    assert info.value.code == "IMG.0130"
    assert "full-ECS" in info.value.message
    assert "cannot be exported or replicated" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("IMG.0130", WholeImageNotExportableError),
        ("IMG.0167", ImageNotReplicableError),
        ("IMG.0196", ImageNotReplicableError),
        ("IMG.0197", ImageNotReplicableError),
        ("IMG.0095", NotFoundError),
        ("IMG.0096", UnsupportedOperationError),
    ],
)
def test_replication_codes(code: str, cls: type) -> None:
    error = error_for(400, code, "m", f"https://ims/v1/cloudimages/{IMAGE}/copy")
    assert type(error) is cls
    assert error.hint
    assert isinstance(error, NotFoundError | UnsupportedOperationError)


def test_copy_job_reads_its_image() -> None:
    job = ImsJob.model_validate(
        {
            "status": "SUCCESS",
            "job_id": JOB["job_id"],
            "job_type": "imsCopyImageInRegionJob",
            "begin_time": "2024-11-06T06:30:00.778Z",
            "end_time": "2024-11-06T06:31:00.778Z",
            "error_code": None,
            "fail_reason": None,
            "entities": {"image_id": IMAGE},
        }
    )
    assert job.image_ids == [IMAGE]


def test_image_replication_attributes() -> None:
    image = Image.model_validate(
        {"id": IMAGE, "__whole_image": True, "__system__cmkid": CMK, "__system_encrypted": "1"}
    )
    assert image.whole_image is True
    assert image.cmk_id == CMK
    assert image.system_encrypted == "1"
    assert Image.model_validate({"id": IMAGE}).whole_image is None


async def test_tags_action_sends_the_page_example(cloud: Cloud) -> None:
    path = f"/v2/{PROJECT_ID}/images/{IMAGE}/tags/action"
    cloud.on("POST", path, 204)
    tags = [ImageTag(key="key1", value="value1"), ImageTag(key="key2", value="value2"), ImageTag(key="key3")]
    async with client_for(cloud) as client:
        await client.ims.update_image_tags(IMAGE, ImageTagsRequest(tags=tags, action="create"))
    assert cloud.body() == {
        "tags": [
            {"key": "key1", "value": "value1"},
            {"key": "key2", "value": "value2"},
            {"key": "key3", "value": ""},
        ],
        "action": "create",
    }


def test_tags_request_rules() -> None:
    with pytest.raises(InvalidRequestError, match="once"):
        build_request(ImageTagsRequest, tags=[{"key": "a", "value": "1"}, {"key": "a", "value": "2"}])
    with pytest.raises(InvalidRequestError):
        build_request(ImageTagsRequest, tags=[])
    with pytest.raises(InvalidRequestError):
        build_request(ImageTagsRequest, tags=[{"key": f"k{n}", "value": ""} for n in range(11)])


async def test_tags_of_a_missing_image(cloud: Cloud) -> None:
    cloud.on(
        "POST", f"/v2/{PROJECT_ID}/images/{IMAGE}/tags/action", 404, {"error": {"code": "X", "message": "-"}}
    )
    async with client_for(cloud) as client:
        with pytest.raises(ImageNotFoundError):
            await client.ims.update_image_tags(IMAGE, ImageTagsRequest(tags=[ImageTag(key="a", value="b")]))
