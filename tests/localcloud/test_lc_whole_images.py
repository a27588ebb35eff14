"""Full-ECS images: ``POST /v1/cloudimages/wholeimages/action`` (creating_a_full-ecs_image.rst), its job and
image, and the export refusal (exporting_an_image.rst)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import PROJECT, seeded, small_seed

ECS_RUN = "b0000000-0000-4000-8000-000000000001"  # ACTIVE, two data disks
ECS_OFF = "b0000000-0000-4000-8000-000000000002"  # SHUTOFF
ECS_NL = "b0000000-0000-4000-8000-000000000003"  # another project's
VAULT = "3c2b1a09-0000-4000-8000-0000000000b1"
VAULT_NL = "3c2b1a09-0000-4000-8000-0000000000ff"
NL = "f" * 32
PATH = "/v1/cloudimages/wholeimages/action"


def whole_seed(**extra: Any) -> dict[str, Any]:
    data = small_seed(
        servers=[
            {"id": ECS_RUN, "name": "run", "project": "eu-de", "status": "ACTIVE", "data_disks": 2},
            {"id": ECS_OFF, "name": "off", "project": "eu-de", "status": "SHUTOFF"},
            {"id": ECS_NL, "name": "nl", "project": "eu-nl", "status": "SHUTOFF"},
        ],
        vaults=[
            {"id": VAULT, "name": "backups", "project": "eu-de"},
            {"id": VAULT_NL, "name": "nl-backups", "project": "eu-nl"},
        ],
        buckets=["exports"],
        **extra,
    )
    data["domains"][0]["projects"].append({"id": NL, "name": "eu-nl"})
    return data


BODY: dict[str, Any] = {
    "name": "run-whole",
    "description": "Create an image from an ECS",
    "instance_id": ECS_RUN,
    "vault_id": VAULT,
    "tags": ["aaa.111", "bbb.333"],
}


async def post(client: httpx.AsyncClient, auth: dict[str, str], body: Any) -> httpx.Response:
    return await client.post(PATH, headers=auth, json=body)


async def refused(client: httpx.AsyncClient, auth: dict[str, str], body: Any) -> str:
    r = await post(client, auth, body)
    assert r.status_code == 400, r.text
    code: str = r.json()["error"]["code"]
    assert r.json()["error"]["message"]
    return code


async def test_a_full_ecs_image_of_a_running_ecs_goes_through_its_job() -> None:
    async with seeded(whole_seed()) as (cloud, client, auth):
        r = await post(client, auth, BODY)
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"job_id"}
        job_id = r.json()["job_id"]
        r = await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)
        job = r.json()
        assert (job["job_type"], job["status"]) == ("imsCreateWholeImageByInstanceJob", "INIT")
        cloud.advance(3)
        assert (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).json()["status"] == "RUNNING"
        cloud.advance(600)
        job = (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).json()
        assert job["status"] == "SUCCESS"
        assert set(job["entities"]) == {"image_id", "image_name"}
        image_id = job["entities"]["image_id"]
        assert job["entities"]["image_name"] == "run-whole"
        image = (await client.get(f"/v2/images/{image_id}", headers=auth)).json()
        assert image["status"] == "active"
        assert image["__whole_image"] is True
        assert sorted(image["tags"]) == ["aaa.111", "bbb.333"]
        # The list filter: full-ECS images only, or none of them.
        listed = await client.get("/v2/cloudimages", headers=auth, params={"__whole_image": "true"})
        assert [i["id"] for i in listed.json()["images"]] == [image_id]
        others = await client.get("/v2/cloudimages", headers=auth, params={"__whole_image": "false"})
        assert image_id not in [i["id"] for i in others.json()["images"]]
        # The ECS was taken as it was: still running (the page asks for no stopped ECS).
        server = (await client.get(f"/v1/{PROJECT}/cloudservers/{ECS_RUN}", headers=auth)).json()["server"]
        assert server["status"] == "ACTIVE"
        quota = (await client.get("/v1/cloudimages/quota", headers=auth)).json()
        assert quota["quotas"]["resources"][0]["used"] == 1


async def test_image_tags_form_and_a_stopped_ecs() -> None:
    async with seeded(whole_seed()) as (_cloud, client, auth):
        body = {
            "name": "off-whole",
            "instance_id": ECS_OFF,
            "vault_id": VAULT,
            "image_tags": [{"key": "key2", "value": "value2"}],
        }
        r = await post(client, auth, body)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"colour": "red"}, "IMG.0001"),  # an undocumented field
        ({"instance_id": None}, "IMG.0012"),  # neither instance_id nor backup_id
        ({"instance_id": 42}, "IMG.0001"),
        ({"backup_id": "9b27efab-4a17-4c06-bfa2-3e0cf021d3c3"}, "IMG.0001"),  # both forms at once
        ({"vault_id": None}, "IMG.0001"),  # a CBR region: vault_id is mandatory [inference]
        ({"vault_id": 7}, "IMG.0001"),
        ({"whole_image_type": "CBR"}, "IMG.0001"),  # a field of the backup form
        ({"name": None}, "IMG.0013"),
        ({"name": "bad/name"}, "IMG.0003"),
        ({"description": "a<b"}, "IMG.0054"),
        ({"image_tags": [{"key": "k", "value": "v"}]}, "IMG.0115"),  # with tags: either, not both
        ({"min_ram": "1024"}, "IMG.0001"),
        ({"min_ram": 2048, "max_ram": 1024}, "IMG.0055"),
        ({"enterprise_project_id": 0}, "IMG.0001"),
        ({"instance_id": "b0000000-0000-4000-8000-0000000000ee"}, "IMG.0005"),  # no such ECS
        ({"instance_id": ECS_NL}, "IMG.0005"),  # another project's
        ({"vault_id": "3c2b1a09-0000-4000-8000-000000000000"}, "IMG.0188"),  # no such vault
        ({"vault_id": VAULT_NL}, "IMG.0188"),  # another project's vault
    ],
)
async def test_the_page_rules_are_enforced(change: dict[str, Any], code: str) -> None:
    async with seeded(whole_seed()) as (cloud, client, auth):
        body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
        assert await refused(client, auth, body) == code
        assert cloud.ims.jobs == {}


async def test_body_forms() -> None:
    async with seeded(whole_seed()) as (_cloud, client, auth):
        r = await client.post(PATH, headers=auth, content=b"")
        assert r.json()["error"]["code"] == "IMG.0007"
        assert await refused(client, auth, []) == "IMG.0001"
        assert await refused(client, auth, {}) == "IMG.0007"


async def test_the_backup_form_is_checked_then_refused_as_not_emulated() -> None:
    async with seeded(whole_seed()) as (_cloud, client, auth):
        backup = {"name": "b", "backup_id": "9b27efab-4a17-4c06-bfa2-3e0cf021d3c3", "whole_image_type": "CBR"}
        r = await post(client, auth, backup)
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "IMG.0105"
        assert "not emulated" in r.json()["error"]["message"]
        assert await refused(client, auth, {**backup, "whole_image_type": "NBU"}) == "IMG.0001"
        assert await refused(client, auth, {**backup, "vault_id": VAULT}) == "IMG.0001"


async def test_one_job_per_ecs_at_a_time_and_no_power_operation_meanwhile() -> None:
    async with seeded(whole_seed()) as (_cloud, client, auth):
        assert (await post(client, auth, BODY)).status_code == 200
        assert await refused(client, auth, {**BODY, "name": "again"}) == "IMG.0136"
        # ECS refuses to stop the ECS while its full-ECS image is being made.
        r = await client.post(
            f"/v1/{PROJECT}/cloudservers/action",
            headers=auth,
            json={"os-stop": {"type": "SOFT", "servers": [{"id": ECS_RUN}]}},
        )
        job = (await client.get(f"/v1/{PROJECT}/jobs/{r.json()['job_id']}", headers=auth)).json()
        assert job["status"] == "FAIL"


async def test_an_ecs_being_powered_on_or_off_is_refused() -> None:
    async with seeded(whole_seed()) as (_cloud, client, auth):
        r = await client.post(
            f"/v1/{PROJECT}/cloudservers/action",
            headers=auth,
            json={"os-start": {"servers": [{"id": ECS_OFF}]}},
        )
        assert r.status_code == 200
        assert await refused(client, auth, {**BODY, "instance_id": ECS_OFF}) == "IMG.0126"


async def test_quota_and_job_faults() -> None:
    seed = whole_seed(
        limits={"image_quota": 0},
    )
    async with seeded(seed) as (_cloud, client, auth):
        assert await refused(client, auth, BODY) == "IMG.0015"
    seed = whole_seed(faults=[{"kind": "job_fail", "operation": "ims.create_whole_image"}])
    async with seeded(seed) as (cloud, client, auth):
        job_id = (await post(client, auth, BODY)).json()["job_id"]
        cloud.advance(600)
        job = (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).json()
        assert (job["status"], job["error_code"]) == ("FAIL", "IMG.0014")
        assert cloud.stats()["ims.create_whole_image"] == 1


async def test_a_full_ecs_image_cannot_be_exported() -> None:
    async with seeded(whole_seed()) as (cloud, client, auth):
        job_id = (await post(client, auth, BODY)).json()["job_id"]
        cloud.advance(600)
        job = (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).json()
        image_id = job["entities"]["image_id"]
        r = await client.post(
            f"/v1/cloudimages/{image_id}/file",
            headers=auth,
            json={"bucket_url": "exports:run.qcow2", "file_format": "qcow2"},
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0128")


def test_the_demo_seed_has_a_vault() -> None:
    from localcloud import demo_seed

    assert [v.id for v in demo_seed().vaults] == [VAULT]


async def test_a_full_ecs_image_made_from_an_ecs_cannot_be_shared() -> None:
    # restrictions_on_image_sharing.rst: "Only full-ECS images created from CBR backups can be shared."
    async with seeded(whole_seed()) as (cloud, client, auth):
        job_id = (await post(client, auth, BODY)).json()["job_id"]
        cloud.advance(600)
        job = (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).json()
        r = await client.post(
            "/v1/cloudimages/members",
            headers=auth,
            json={"images": [job["entities"]["image_id"]], "projects": [NL]},
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0135")
