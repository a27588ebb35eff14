"""The models of the system + data disks image kind, from the API pages' examples: ``data_images`` on
``POST /v2/cloudimages/action`` (creating_an_image.rst; never with ``instance_id``: "You cannot specify
instance_id"), ``sub_jobs_result`` of an
``imsVolumesToSysDataImagesJob`` (querying_the_status_of_an_asynchronous_job.rst), and the ECS's
``os-extended-volumes:volumes_attached`` (contract §4.1)."""

from __future__ import annotations

from typing import Any

import pytest

from imsflow.errors import InvalidRequestError
from imsflow.models import (
    CreateDataImagesRequest,
    CreateImageFromEcsRequest,
    DataImage,
    Image,
    ImsJob,
    Server,
    build_request,
)
from imsflow.validation import DESCRIPTION_RULE, NAME_RULE, UUID_RULE

INSTANCE = "877a2cda-ba63-4e1e-b95f-e67e48b6129a"
VOLUME = "c5dfbd0c-bf0a-4798-a453-61dc6b54aa30"

# creating_an_image.rst: "Creating a data disk image with parameter tags using a data disk".
PAGE_MEMBER: dict[str, Any] = {
    "name": "ims_data_image_test",
    "description": "Create a data disk image from the data disk of an ECS",
    "volume_id": VOLUME,
    "tags": ["aaa.111", "bbb.333", "ccc.444"],
}

# querying_the_status_of_an_asynchronous_job.rst: "If the job_type is imsVolumesToSysDataImagesJob".
PAGE_JOB: dict[str, Any] = {
    "job_id": "9a175ac792fa12d201930031febf2bdd",
    "job_type": "imsVolumesToSysDataImagesJob",
    "begin_time": "2024-11-06T06:38:16.765Z",
    "end_time": "2024-11-06T06:48:16.765Z",
    "status": "SUCCESS",
    "error_code": None,
    "fail_reason": None,
    "entities": {
        "sub_jobs_result": [
            {
                "job_id": "9a175ac792fa12d20193003205b22be1",
                "job_type": "imsCopyVolumeToImageJob",
                "begin_time": "2024-11-06T06:38:18.545Z",
                "end_time": "2024-11-06T06:48:16.765Z",
                "status": "SUCCESS",
                "error_code": None,
                "fail_reason": None,
                "entities": {"image_name": "test", "image_id": "bfb2de92-e7b9-4820-9522-416d8f2c812a"},
            }
        ],
        "sub_jobs_list": ["9a175ac792fa12d20193003205b22be1"],
    },
}


def test_a_data_images_member_is_sent_as_the_page_writes_it() -> None:
    body = CreateDataImagesRequest(data_images=[DataImage(**PAGE_MEMBER)]).to_body()
    # The page's example "using a data disk": data_images only, no instance_id (nor name or tags).
    assert body == {"data_images": [PAGE_MEMBER]}
    assert CreateDataImagesRequest(data_images=[DataImage(**PAGE_MEMBER)]).volumes == [VOLUME]


def test_instance_id_with_data_images_is_refused_by_the_page_rule() -> None:
    with pytest.raises(InvalidRequestError, match="You cannot specify instance_id") as caught:
        build_request(
            CreateImageFromEcsRequest,
            name="ims_test",
            instance_id=INSTANCE,
            data_images=[DataImage(**PAGE_MEMBER)],
        )
    assert caught.value.field == "data_images"
    assert "CreateDataImagesRequest" in caught.value.rule
    # An empty list asks for no data-disk image: the plain system-disk image.
    empty = CreateImageFromEcsRequest(name="ims_test", instance_id=INSTANCE, data_images=[])
    assert empty.to_body() == {"name": "ims_test", "instance_id": INSTANCE, "data_images": []}


def test_a_data_images_request_has_neither_instance_id_nor_an_empty_list() -> None:
    with pytest.raises(InvalidRequestError, match="instance_id"):
        build_request(CreateDataImagesRequest, data_images=[DataImage(**PAGE_MEMBER)], instance_id=INSTANCE)
    with pytest.raises(InvalidRequestError, match="data_images"):
        build_request(CreateDataImagesRequest, data_images=[])


def test_the_page_image_tags_form_of_a_member() -> None:
    member = {**PAGE_MEMBER, "tags": None, "image_tags": [{"key": "key2", "value": "value2"}]}
    body = DataImage(**member).model_dump(mode="json", exclude_none=True)
    assert body["image_tags"] == [{"key": "key2", "value": "value2"}]
    assert "tags" not in body


def test_data_images_is_left_out_unless_set() -> None:
    assert "data_images" not in CreateImageFromEcsRequest(name="ims_test", instance_id=INSTANCE).to_body()


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"name": " lead"}, "data_images.name", NAME_RULE),
        ({"name": "x" * 129}, "data_images.name", NAME_RULE),
        ({"volume_id": "vdb"}, "data_images.volume_id", UUID_RULE),
        ({"description": "a<b>"}, "data_images.description", DESCRIPTION_RULE),
        ({"tags": ["no-dot"]}, "data_images.tags", "key.value"),
        ({"image_tags": [{"key": "k", "value": "v"}]}, "tags", "either tags or image_tags"),
        ({"tags": [f"k{i}.v" for i in range(11)]}, "tags", "at most 10 tags"),
    ],
)
def test_a_member_follows_the_image_rules(change: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(InvalidRequestError, match="invalid") as caught:
        build_request(DataImage, **{**PAGE_MEMBER, **change})
    assert caught.value.field == field
    assert rule in caught.value.rule


def test_a_data_disk_is_imaged_once_per_request() -> None:
    twice = [DataImage(**PAGE_MEMBER), DataImage(**{**PAGE_MEMBER, "name": "other"})]
    with pytest.raises(InvalidRequestError, match="each data disk"):
        build_request(CreateDataImagesRequest, data_images=twice)


def test_the_page_job_lists_its_images_from_sub_jobs_result() -> None:
    job = ImsJob.model_validate(PAGE_JOB)
    assert job.image_ids == ["bfb2de92-e7b9-4820-9522-416d8f2c812a"]
    assert job.image_id == "bfb2de92-e7b9-4820-9522-416d8f2c812a"


def test_a_set_job_lists_the_system_image_first_then_the_data_images() -> None:
    subs = [
        {
            "status": "SUCCESS",
            "job_id": f"sub{i}",
            "entities": {"image_id": f"img-{i}", "image_name": f"n{i}"},
        }
        for i in range(3)
    ]
    job = ImsJob.model_validate({**PAGE_JOB, "entities": {"sub_jobs_result": subs}})
    assert job.image_ids == ["img-0", "img-1", "img-2"]
    assert job.image_id == "img-0"
    # A job of one image: entities.image_id alone (none before it is known).
    single = ImsJob.model_validate({"status": "SUCCESS", "entities": {"image_id": "only", "image_name": "x"}})
    assert single.image_ids == ["only"]
    assert ImsJob.model_validate({"status": "RUNNING"}).image_ids == []


def test_the_server_lists_its_data_disks_in_device_order() -> None:
    volumes = [
        {"id": "d-aa", "device": "/dev/vdaa", "bootIndex": "-1", "delete_on_termination": "false"},
        {"id": "d-c", "device": "/dev/vdc", "bootIndex": "-1", "delete_on_termination": "false"},
        {"id": "sys", "device": "/dev/vda", "bootIndex": "0", "delete_on_termination": "false"},
        {"id": "d-b", "device": "/dev/vdb", "bootIndex": "-1", "delete_on_termination": "false"},
    ]
    server = Server.model_validate(
        {
            "id": INSTANCE,
            "name": "web-1",
            "status": "SHUTOFF",
            "os-extended-volumes:volumes_attached": volumes,
        }
    )
    assert server.system_volume_id == "sys"
    assert server.data_volume_ids == ["d-b", "d-c", "d-aa"]
    assert [v.device_name for v in server.data_volumes] == ["vdb", "vdc", "vdaa"]
    assert Server.model_validate({"id": INSTANCE, "name": "x", "status": "ACTIVE"}).data_volume_ids == []


def test_an_image_says_whether_it_is_a_data_image() -> None:
    assert Image.model_validate({"id": "i", "virtual_env_type": "DataImage"}).is_data_image
    assert not Image.model_validate({"id": "i", "virtual_env_type": "FusionCompute"}).is_data_image
