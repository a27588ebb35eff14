"""Contract tests: the examples of the API pages parse into the models, and request models serialize
to the documented shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from imsflow.auth import token_request_body
from imsflow.models import (
    CreateImageFromEcsRequest,
    DeleteImageRequest,
    EcsJob,
    ExportImageRequest,
    IamToken,
    Image,
    ImageList,
    ImageListQuery,
    ImsJob,
    JobIdResponse,
    ProjectList,
    QuotaResponse,
    Server,
    ServerActionRequest,
    ServerDetail,
    ServerPage,
    TokenRequest,
    TokenResponse,
)

from .conftest import load

# ------------------------------------------------------------------------------------------ requests


def test_create_image_request_with_tags_matches_the_page() -> None:
    page = load("ims_creating_an_image.request.ecs_tags.json")
    assert CreateImageFromEcsRequest(**page).to_body() == page


def test_create_image_request_with_image_tags_matches_the_page() -> None:
    page = load("ims_creating_an_image.request.ecs_image_tags.json")
    req = CreateImageFromEcsRequest.model_validate(page)
    assert req.to_body() == page
    assert req.image_tags is not None
    assert req.image_tags[0].key == "key2"


def test_create_image_request_leaves_out_unset_fields() -> None:
    req = CreateImageFromEcsRequest(name="n", instance_id="877a2cda-ba63-4e1e-b95f-e67e48b6129a", min_ram=0)
    assert req.to_body() == {"name": "n", "instance_id": "877a2cda-ba63-4e1e-b95f-e67e48b6129a", "min_ram": 0}


def test_export_request_matches_the_page() -> None:
    page = load("ims_exporting_an_image.request.json")
    assert ExportImageRequest(**page).to_body() == page


def test_delete_request_matches_the_page() -> None:
    page = load("ims_deleting_an_image.request.json")
    assert DeleteImageRequest(**page).to_body() == page
    assert DeleteImageRequest().to_body() == {}


def test_stop_request_matches_the_page() -> None:
    page = load("ecs_stopping_ecss_in_a_batch.request.json")
    ids = [s["id"] for s in page["os-stop"]["servers"]]
    assert ServerActionRequest.stop(ids, type="HARD").to_body() == page
    assert ServerActionRequest.model_validate(page).to_body() == page


def test_stop_request_defaults_to_soft() -> None:
    body = ServerActionRequest.stop(["a"]).to_body()
    assert body == {"os-stop": {"servers": [{"id": "a"}], "type": "SOFT"}}


def test_start_request_matches_the_page() -> None:
    page = load("ecs_starting_ecss_in_a_batch.request.json")
    ids = [s["id"] for s in page["os-start"]["servers"]]
    assert ServerActionRequest.start(ids).to_body() == page


def test_token_request_matches_the_page_shape() -> None:
    page = load("iam_obtaining_a_user_token.request.json")
    req = TokenRequest.password(domain="domain A", username="user A", password=SecretStr("**********"))
    assert token_request_body(req) == page


def test_token_request_project_scope_and_secret_handling() -> None:
    req = TokenRequest.password(
        domain="acme", username="alice", password=SecretStr("pw-1234"), project_name="eu-de"
    )
    assert req.to_body()["auth"]["scope"] == {"project": {"name": "eu-de"}}
    # The model never shows the password; only auth.token_request_body unwraps it.
    assert "pw-1234" not in repr(req)
    assert "pw-1234" not in str(req.to_body())
    assert token_request_body(req)["auth"]["identity"]["password"]["user"]["password"] == "pw-1234"
    by_id = TokenRequest.password(
        domain="acme", username="alice", password=SecretStr("pw"), project_id="p1", project_name="eu-de"
    )
    assert by_id.to_body()["auth"]["scope"] == {"project": {"id": "p1"}}


def test_image_list_query_params() -> None:
    query = ImageListQuery(
        imagetype="private",
        protected=False,
        name="web",
        limit=10,
        sort_dir="asc",
        created_at="gt:2024-01-01T00:00:00Z",
    )
    assert query.to_params() == {
        "__imagetype": "private",
        "protected": "false",
        "name": "web",
        "limit": "10",
        "sort_dir": "asc",
        "created_at": "gt:2024-01-01T00:00:00Z",
    }
    assert ImageListQuery().to_params() == {}
    assert ImageListQuery.model_validate({"__imagetype": "gold"}).to_params() == {"__imagetype": "gold"}


# ----------------------------------------------------------------------------------------- responses


def test_token_response_from_the_page() -> None:
    body = TokenResponse.model_validate(load("iam_obtaining_a_user_token.response.json"))
    token = IamToken.from_response("MIIDkgYJKoZIhvcNAQcCoIIDgzCCA38CAQExDTALBglghkgBZQMEAgEwgXXXXX...", body)
    assert token.expires_at == datetime(2015, 11, 9, 1, 42, 57, 527363, tzinfo=UTC)
    assert token.issued_at == datetime(2015, 11, 9, 0, 42, 57, 527404, tzinfo=UTC)
    assert token.user_name == "user A"
    assert token.domain_name == "domain A"
    assert token.project_id is None  # a domain-scoped example
    assert body.token.catalog[0].endpoints[0].url == "https://sample.domain.com/v3"
    assert body.token.user is not None
    assert body.token.user.password_expires_at == datetime(2016, 11, 6, 15, 32, 17, tzinfo=UTC)
    assert "MIIDkgYJ" not in repr(token)


def test_token_expiry_window() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = IamToken(value=SecretStr("t"), expires_at=now + timedelta(minutes=10))
    assert not token.expires_within(300, now=now)
    assert token.expires_within(900, now=now)
    assert token.expires_within(0, now=now + timedelta(minutes=11))


@pytest.mark.parametrize(
    "name", ["iam_querying_projects.response.json", "iam_querying_projects_accessible_to_users.response.json"]
)
def test_project_lists_from_the_pages(name: str) -> None:
    page = ProjectList.model_validate(load(name))
    assert page.projects
    assert page.projects[0].id
    assert page.projects[0].enabled is True


def test_server_detail_from_the_page() -> None:
    server = ServerDetail.model_validate(load("ecs_querying_details_about_an_ecs.response.json")).server
    assert server.id == "4f4b3dfa-eb70-47cf-a60a-998a53bd598a"
    assert server.status == "ACTIVE"
    assert server.vm_state == "active"
    assert server.task_state is None
    assert server.power_state == 1
    assert server.locked is False
    assert server.tags == []
    assert server.created == datetime(2018, 9, 13, 7, 3, 44, tzinfo=UTC)
    assert server.metadata["os_type"] == "Linux"
    assert server.image is not None
    assert server.image.id == "c71b64e7-4767-4406-afde-2c7c7ac2242c"
    assert server.system_volume_id == "80c15cff-2473-4982-a816-d760cad6c42c"
    assert server.availability_zone == "az1-dc1"
    assert not server.is_stopped
    assert server.is_running
    # Unknown attributes are kept, not refused.
    assert server.model_extra is not None
    assert server.model_extra["OS-EXT-SRV-ATTR:host"] == "az21.dc1"


def test_server_list_from_the_page() -> None:
    page = ServerPage.model_validate(load("ecs_listing_details_about_ecss.response.json"))
    assert page.count == 4
    assert page.servers[0].status == "SHUTOFF"
    assert all(isinstance(s, Server) for s in page.servers)


@pytest.mark.parametrize(
    ("status", "task_state", "stopped"),
    [("SHUTOFF", None, True), ("SHUTOFF", "powering-on", False), ("ACTIVE", "powering-off", False)],
)
def test_is_stopped_needs_an_idle_shutoff_server(status: str, task_state: str | None, stopped: bool) -> None:
    server = Server.model_validate(
        {"id": "s", "name": "n", "status": status, "OS-EXT-STS:task_state": task_state}
    )
    assert server.is_stopped is stopped


def test_server_accepts_field_names_too() -> None:
    server = Server(id="s", name="n", status="SHUTOFF", vm_state="stopped", power_state=4)
    assert server.model_dump(by_alias=True)["OS-EXT-STS:vm_state"] == "stopped"


@pytest.mark.parametrize(
    "name",
    [
        "ims_creating_an_image.response.json",
        "ims_exporting_an_image.response.json",
        "ecs_stopping_ecss_in_a_batch.response.json",
        "ecs_starting_ecss_in_a_batch.response.json",
    ],
)
def test_job_id_responses(name: str) -> None:
    assert len(JobIdResponse.model_validate(load(name)).job_id) == 32


def test_ecs_job_from_the_page() -> None:
    job = EcsJob.model_validate(load("ecs_querying_job_execution_status.response.json"))
    assert job.status == "SUCCESS"
    assert job.entities.sub_jobs_total == 1
    assert job.entities.sub_jobs[0].entities.server_id == "bae51750-0089-41a1-9b18-5c777978ff6d"
    assert job.server_ids == ["bae51750-0089-41a1-9b18-5c777978ff6d"]
    assert job.begin_time == datetime(2016, 4, 25, 20, 4, 34, 604000, tzinfo=UTC)


def test_ims_create_job_from_the_page() -> None:
    job = ImsJob.model_validate(load("ims_querying_job.response.create_image_by_instance.json"))
    assert job.status == "SUCCESS"
    assert job.job_type == "imsCreateImageByInstance"
    assert job.image_id == "3f7185de-b59a-4bb8-aa1d-7a513528b0e9"
    assert job.entities.image_name == "test"
    assert job.error_code is None
    assert job.end_time == datetime(2024, 11, 6, 6, 23, 25, 158000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "image_id"),
    [
        ("ims_querying_job.response.import_ova.json", "fc496c19-40c2-4220-8b1a-eba9d53fca7b"),
        ("ims_querying_job.response.volumes_to_sys_data_images.json", "bfb2de92-e7b9-4820-9522-416d8f2c812a"),
        ("ims_querying_job.response.native_export.json", "1ab4df10-fe18-48b7-91c9-53695fcd9df5"),
        ("ims_querying_job.response.add_image_members.json", None),
    ],
)
def test_image_id_from_entities_or_sub_jobs(name: str, image_id: str | None) -> None:
    job = ImsJob.model_validate(load(name))
    assert job.image_id == image_id


def test_ims_job_tolerates_failures_unknown_status_and_progress() -> None:
    failed = ImsJob.model_validate(
        {"job_id": "j", "status": "FAIL", "error_code": "IMS.0194", "fail_reason": "boom", "entities": None}
    )
    assert failed.status == "FAIL"
    assert failed.image_id is None
    odd = ImsJob.model_validate(
        {
            "job_id": "j",
            "status": "PENDING",
            "begin_time": "not a time",
            "entities": {"process_percent": 42.5},
        }
    )
    assert odd.status == "PENDING"
    assert odd.begin_time is None
    assert odd.process_percent == 42.5


def test_image_list_from_the_page() -> None:
    images = ImageList.model_validate(load("ims_querying_images.response.json")).images
    assert len(images) == 2
    first = images[0]
    assert first.imagetype == "gold"
    assert first.protected is True
    assert first.min_ram == 2048
    assert first.os_version == "CentOS 7.3 64bit"
    assert first.is_registered == "true"
    assert first.self_link == "/v2/images/bc6bed6e-ba3a-4447-afcc-449174a3eb52"
    assert first.created_at == datetime(2018, 9, 6, 14, 3, 27, tzinfo=UTC)
    assert first.is_active


def test_image_details_from_the_page() -> None:
    image = Image.model_validate(load("ims_querying_image_details.response.json"))
    assert image.id == "bc6bed6e-ba3a-4447-afcc-449174a3eb52"
    assert image.disk_format == "zvhd2"
    assert image.virtual_size is None
    assert image.model_extra is not None
    assert image.model_extra["__lazyloading"] == "true"


def test_image_size_and_description_aliases() -> None:
    image = Image.model_validate(
        {"id": "i", "__image_size": "1073741824", "__description": "d", "max_ram": "4096", "tags": None}
    )
    assert image.image_size == 1073741824
    assert image.description == "d"
    assert image.tags == []


def test_quota_from_the_page() -> None:
    quota = QuotaResponse.model_validate(load("ims_querying_the_image_quota.response.json")).quotas
    image = quota.get("image")
    assert image is not None
    assert (image.used, image.quota, image.min, image.max) == (0, 20, 1, 1000)
    assert image.remaining == 20
    assert quota.get("image_shared") is None
