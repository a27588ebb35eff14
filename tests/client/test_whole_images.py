"""Full-ECS images in the client: ``CreateWholeImageRequest`` (creating_a_full-ecs_image.rst, its two body
forms and their rules, checked before any call), ``ims.create_whole_image``, the job page's
``imsCreateWholeImageByInstanceJob`` example, ``Image.is_whole_image`` and the errors of the kind."""

from __future__ import annotations

from typing import Any

import pytest

from imsflow.errors import (
    ERROR_CODES,
    EcsBusyError,
    InvalidRequestError,
    UnsupportedOperationError,
    WholeImageNotExportableError,
    error_for,
)
from imsflow.models import CreateWholeImageRequest, Image, ImsJob, build_request
from imsflow.validation import IMAGE_KINDS, UUID_RULE, check_image_kind

from .conftest import IMS
from .test_client import Cloud, client_for

INSTANCE = "877a2cda-ba63-4e1e-b95f-e67e48b6129a"
VAULT = "de9fcf45-11b2-432c-8562-5c5428574600"
BACKUP = "9b27efab-4a17-4c06-bfa2-3e0cf021d3c3"

# The page's examples, as they are.
PAGE_ECS_TAGS: dict[str, Any] = {
    "name": "instance_whole_image",
    "description": "Create an image from an ECS",
    "instance_id": INSTANCE,
    "vault_id": VAULT,
    "tags": ["aaa.111", "bbb.333", "ccc.444"],
}
PAGE_ECS_IMAGE_TAGS: dict[str, Any] = {
    "name": "instance_whole_image",
    "description": "Create an image from an ECS",
    "instance_id": INSTANCE,
    "vault_id": VAULT,
    "image_tags": [{"key": "key2", "value": "value2"}, {"key": "key1", "value": "value1"}],
}
PAGE_BACKUP: dict[str, Any] = {
    "name": "backup_whole_image",
    "description": "Create a full-ECS image from a CBR backup",
    "backup_id": BACKUP,
    "whole_image_type": "CBR",
    "tags": ["aaa.111", "bbb.333", "ccc.444"],
}
# querying_the_status_of_an_asynchronous_job.rst: "If the job_type is imsCreateWholeImageByInstanceJob".
PAGE_JOB: dict[str, Any] = {
    "job_id": "9a175ac792fa12d201930028cddb29c6",
    "job_type": "imsCreateWholeImageByInstanceJob",
    "begin_time": "2024-11-06T06:28:14.425Z",
    "end_time": "2024-11-06T06:37:03.742Z",
    "status": "SUCCESS",
    "error_code": None,
    "fail_reason": None,
    "entities": {"image_name": "test", "image_id": "17b7bdeb-2e72-43a0-a202-d36ce344e902"},
}


@pytest.mark.parametrize("page", [PAGE_ECS_TAGS, PAGE_ECS_IMAGE_TAGS, PAGE_BACKUP])
def test_the_page_examples_are_valid_requests_and_sent_as_they_are(page: dict[str, Any]) -> None:
    assert CreateWholeImageRequest(**page).to_body() == page


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"name": "n"}, "instance_id", "exactly one of instance_id and backup_id"),
        ({"name": "n", "instance_id": INSTANCE, "backup_id": BACKUP}, "instance_id", "exactly one"),
        ({"name": "n", "instance_id": INSTANCE, "whole_image_type": "CBR"}, "whole_image_type", "backup_id"),
        ({"name": "n", "backup_id": BACKUP, "vault_id": VAULT}, "vault_id", "instance_id only"),
        ({"name": "n", "instance_id": "web-1"}, "instance_id", UUID_RULE),
        ({"name": "n", "instance_id": INSTANCE, "vault_id": "vault-1"}, "vault_id", UUID_RULE),
        ({"name": "bad/name", "instance_id": INSTANCE}, "name", "letters, digits"),
        (
            {
                "name": "n",
                "instance_id": INSTANCE,
                "tags": ["a.b"],
                "image_tags": [{"key": "c", "value": "d"}],
            },
            "tags",
            "either tags or image_tags",
        ),
        ({"name": "n", "instance_id": INSTANCE, "min_ram": 2048, "max_ram": 1024}, "max_ram", "below"),
    ],
)
def test_the_page_rules_are_checked_before_any_call(data: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        build_request(CreateWholeImageRequest, **data)
    assert info.value.field.startswith(field), info.value
    assert words in str(info.value)


def test_unknown_fields_and_wrong_types_are_refused() -> None:
    with pytest.raises(InvalidRequestError):
        build_request(CreateWholeImageRequest, name="n", instance_id=INSTANCE, colour="red")
    with pytest.raises(InvalidRequestError):
        build_request(CreateWholeImageRequest, name="n", backup_id=BACKUP, whole_image_type="NBU")


def test_the_job_page_example_names_the_image() -> None:
    job = ImsJob.model_validate(PAGE_JOB)
    assert job.image_id == "17b7bdeb-2e72-43a0-a202-d36ce344e902"
    assert job.image_ids == ["17b7bdeb-2e72-43a0-a202-d36ce344e902"]


@pytest.mark.parametrize(("value", "whole"), [(True, True), ("true", True), (False, False), (None, False)])
def test_whole_image_attribute(value: object, whole: bool) -> None:
    image = Image.model_validate({"id": INSTANCE, "__whole_image": value})
    assert image.is_whole_image is whole


def test_full_ecs_is_an_image_kind() -> None:
    assert check_image_kind("full-ecs") == "full-ecs"
    assert "CBR vault" in IMAGE_KINDS["full-ecs"]


def test_errors_of_the_kind() -> None:
    for code in ("IMG.0128", "IMG.0130"):
        assert ERROR_CODES[code] is WholeImageNotExportableError
        error = error_for(400, code, "The full-ECS image cannot be exported.", f"{IMS}/v1/cloudimages/x/file")
        assert isinstance(error, UnsupportedOperationError)
        assert error.code == code
        assert "cannot be exported" in error.message
        assert "--kind system" in (error.hint or "")
    assert ERROR_CODES["IMG.0136"] is EcsBusyError
    for code in ("IMG.0126", "IMG.0188", "IMG.0184", "IMG.0193", "IMG.0180"):
        assert code in ERROR_CODES


async def test_create_whole_image_posts_the_page_body() -> None:
    cloud = Cloud()
    cloud.on(
        "POST", "/v1/cloudimages/wholeimages/action", 200, {"job_id": "4010a32b5f909853015f90aaa24b0015"}
    )
    async with client_for(cloud) as client:
        job_id = await client.ims.create_whole_image(CreateWholeImageRequest(**PAGE_ECS_TAGS))
    assert job_id == "4010a32b5f909853015f90aaa24b0015"
    request = cloud.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{IMS}/v1/cloudimages/wholeimages/action")
    assert cloud.body() == PAGE_ECS_TAGS


async def test_create_whole_image_maps_the_cloud_error() -> None:
    cloud = Cloud()
    body = {
        "error": {
            "code": "IMG.0136",
            "message": "Failed to create a full-ECS image because the ECS is being backed up.",
        }
    }
    cloud.on("POST", "/v1/cloudimages/wholeimages/action", 400, body)
    async with client_for(cloud) as client:
        with pytest.raises(EcsBusyError) as info:
            await client.ims.create_whole_image(
                CreateWholeImageRequest(name="n", instance_id=INSTANCE, vault_id=VAULT)
            )
    assert info.value.code == "IMG.0136"
    assert "being backed up" in str(info.value)
