"""Replication within a region on the local cloud, from the pages: replicating_an_image_within_a_region.rst
(the body, the constraints), the job page (``imsCopyImageInRegionJob``, ``entities.image_id``), the image
attributes (``__whole_image``, ``__system__cmkid``, ``enterprise_project_id``) and the tagging page
(adding_or_deleting_image_tags_in_a_batch.rst)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import PROJECT
from .test_lc_sharing import (
    IMAGE_1,
    IMAGE_2,
    PUBLIC,
    RECEIVER,
    SAVING,
    error_code,
    finished_job,
    share,
    two_projects,
)

# The page's example: the image and the key.
CMK = "bd66288c-9081-460a-8227-4cbd0c814cb4"
EPS = "b3a1f4a2-7c1e-4a5e-9d3b-2f6c8e0a1b2c"
UNKNOWN_IMAGE = "465076de-dc36-4aec-80f5-ef9d8009428f"


async def copy(c: httpx.AsyncClient, auth: dict[str, str], image_id: str, body: Any) -> httpx.Response:
    return await c.post(f"/v1/cloudimages/{image_id}/copy", json=body, headers=auth)


async def test_the_pages_example_makes_an_encrypted_copy() -> None:
    async with two_projects() as (cloud, c, owner, _):
        body = {"name": "ims_encrypted_copy3", "description": "test copy", "cmk_id": CMK}
        r = await copy(c, owner, IMAGE_1, body)
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"job_id"}
        # While the job runs the copy is there already, being made (as an image from an ECS).
        made = [i for i in cloud.ims.images.values() if i.name == "ims_encrypted_copy3"]
        assert [i.status for i in made] == ["queued"]
        job = await finished_job(cloud, c, owner, r)
        assert job["job_type"] == "imsCopyImageInRegionJob"
        assert job["status"] == "SUCCESS"
        copy_id = job["entities"]["image_id"]
        image = (await c.get(f"/v2/images/{copy_id}", headers=owner)).json()
        assert image["status"] == "active"
        assert image["name"] == "ims_encrypted_copy3"
        assert image["__description"] == "test copy"
        assert image["__system__cmkid"] == CMK
        assert image["__system_encrypted"] == "1"
        assert image["__whole_image"] is False
        assert image["__originalimagename"] == IMAGE_1
        assert image["enterprise_project_id"] == "0"
        assert image["tags"] == []  # the request has no tags
        assert image["__imagetype"] == "private"
        source = (await c.get(f"/v2/images/{IMAGE_1}", headers=owner)).json()
        assert "__system__cmkid" not in source
        assert cloud.stats()["ims.copy_image"] == 1


async def test_enterprise_project_and_blank_values() -> None:
    async with two_projects() as (cloud, c, owner, _):
        job = await finished_job(
            cloud, c, owner, await copy(c, owner, IMAGE_1, {"name": "moved", "enterprise_project_id": EPS})
        )
        image = (await c.get(f"/v2/images/{job['entities']['image_id']}", headers=owner)).json()
        assert image["enterprise_project_id"] == EPS
        assert "__system__cmkid" not in image
        listed = await c.get(
            "/v2/cloudimages", params={"name": "moved", "enterprise_project_id": EPS}, headers=owner
        )
        assert [i["id"] for i in listed.json()["images"]] == [image["id"]]
        # "0" or blank: the default enterprise project; a blank cmk_id: not encrypted.
        for eps in ("0", ""):
            body = {"name": f"plain-{eps or 'blank'}", "enterprise_project_id": eps, "cmk_id": ""}
            job = await finished_job(cloud, c, owner, await copy(c, owner, IMAGE_1, body))
            image = (await c.get(f"/v2/images/{job['entities']['image_id']}", headers=owner)).json()
            assert image["enterprise_project_id"] == "0"
            assert "__system_encrypted" not in image


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "IMG.0007"),
        ({"description": "no name"}, "IMG.0013"),
        ({"name": ""}, "IMG.0013"),
        ({"name": 7}, "IMG.0001"),
        ({"name": "x" * 129}, "IMG.0002"),
        ({"name": "bad/name"}, "IMG.0003"),
        ({"name": "ok", "description": "x" * 1025}, "IMG.0004"),
        ({"name": "ok", "description": "a <b>"}, "IMG.0054"),
        ({"name": "ok", "description": "two\rlines"}, "IMG.0054"),
        ({"name": "ok", "description": 1}, "IMG.0001"),
        ({"name": "ok", "cmk_id": 5}, "IMG.0001"),
        ({"name": "ok", "cmk_id": "not-a-key"}, "IMG.0095"),
        ({"name": "ok", "enterprise_project_id": 0}, "IMG.0001"),
        ({"name": "ok", "enterprise_project_id": "marketing"}, "IMG.0001"),
        ({"name": "ok", "tags": ["a.b"]}, "IMG.0001"),  # the copy takes no tags
        ({"name": "ok", "instance_id": IMAGE_2}, "IMG.0001"),
    ],
)
async def test_the_body_is_read_strictly(body: dict[str, Any], code: str) -> None:
    async with two_projects() as (cloud, c, owner, _):
        r = await copy(c, owner, IMAGE_1, body)
        assert r.status_code == 400, r.text
        assert error_code(r) == code
        assert set(r.json()["error"]) == {"code", "message"}
        assert len(cloud.ims.images) == 4  # nothing made


async def test_not_json_and_an_unknown_image() -> None:
    async with two_projects() as (_, c, owner, _):
        r = await c.post(f"/v1/cloudimages/{IMAGE_1}/copy", content=b"[1]", headers=owner)
        assert error_code(r) == "IMG.0001"
        r = await copy(c, owner, UNKNOWN_IMAGE, {"name": "x"})
        assert r.status_code == 404
        assert error_code(r) == "IMG.0144"


async def test_the_pages_constraints_and_the_states_refusals() -> None:
    async with two_projects() as (cloud, c, owner, receiver):
        # "Full-ECS images cannot be replicated." -> IMG.0130 (its message names replication).
        cloud.ims.images[IMAGE_1].whole_image = True
        r = await copy(c, owner, IMAGE_1, {"name": "x"})
        assert (r.status_code, error_code(r)) == (400, "IMG.0130")
        image = (await c.get(f"/v2/images/{IMAGE_1}", headers=owner)).json()
        assert image["__whole_image"] is True
        # "Private images created using ISO files do not support in-region replication." -> IMG.0167.
        cloud.ims.images[IMAGE_2].virtual_env_type = "IsoImage"
        assert error_code(await copy(c, owner, IMAGE_2, {"name": "x"})) == "IMG.0167"
        assert error_code(await copy(c, owner, PUBLIC, {"name": "x"})) == "IMG.0105"
        assert error_code(await copy(c, owner, SAVING, {"name": "x"})) == "IMG.0046"
        # The same key as the source's: IMG.0096.
        cloud.ims.images[IMAGE_2].virtual_env_type = "FusionCompute"
        cloud.ims.images[IMAGE_2].cmk_id = CMK
        assert error_code(await copy(c, owner, IMAGE_2, {"name": "x", "cmk_id": CMK})) == "IMG.0096"
        # A shared image: accepted first (IMG.0196), and not an encrypted one (IMG.0197).
        cloud.ims.images[IMAGE_1].whole_image = False
        await finished_job(cloud, c, owner, await share(c, owner, [IMAGE_1, IMAGE_2], [RECEIVER]))
        assert error_code(await copy(c, receiver, IMAGE_1, {"name": "x"})) == "IMG.0196"
        r = await c.put(
            "/v1/cloudimages/members",
            json={"images": [IMAGE_1, IMAGE_2], "project_id": RECEIVER, "status": "accepted"},
            headers=receiver,
        )
        await finished_job(cloud, c, receiver, r)
        assert error_code(await copy(c, receiver, IMAGE_2, {"name": "x"})) == "IMG.0197"
        job = await finished_job(cloud, c, receiver, await copy(c, receiver, IMAGE_1, {"name": "mine"}))
        mine = (await c.get(f"/v2/images/{job['entities']['image_id']}", headers=receiver)).json()
        assert mine["owner"] == RECEIVER
        assert mine["__imagetype"] == "private"


async def test_quota_and_unique_names() -> None:
    async with two_projects(limits={"image_quota": 4, "unique_image_names": True}) as (cloud, c, owner, _):
        assert error_code(await copy(c, owner, IMAGE_1, {"name": "golden-2"})) == "IMG.0009"
        await finished_job(cloud, c, owner, await copy(c, owner, IMAGE_1, {"name": "fourth"}))
        assert error_code(await copy(c, owner, IMAGE_1, {"name": "fifth"})) == "IMG.0015"


async def test_a_failing_or_stuck_copy_job_by_fault_rule() -> None:
    async with two_projects() as (cloud, c, owner, _):
        await c.post("/_local/faults", json={"kind": "job_fail", "operation": "ims.copy_image", "first": 1})
        job = await finished_job(cloud, c, owner, await copy(c, owner, IMAGE_1, {"name": "broken"}))
        assert job["status"] == "FAIL"
        assert job["error_code"] == "IMG.0014"
        assert cloud.ims.images[job["entities"]["image_id"]].status == "killed"
        await c.post("/_local/faults", json={"kind": "job_stuck", "operation": "ims.copy_image", "first": 1})
        job = await finished_job(cloud, c, owner, await copy(c, owner, IMAGE_1, {"name": "stuck"}))
        assert job["status"] == "RUNNING"
        await c.post(
            "/_local/faults", json={"kind": "server_error", "operation": "ims.copy_image", "status": 503}
        )
        assert (await copy(c, owner, IMAGE_1, {"name": "never"})).status_code == 503


async def tag(c: httpx.AsyncClient, auth: dict[str, str], image_id: str, body: Any) -> httpx.Response:
    return await c.post(f"/v2/{PROJECT}/images/{image_id}/tags/action", json=body, headers=auth)


async def test_tags_action_as_the_page_shows() -> None:
    async with two_projects() as (cloud, c, owner, _):
        # The page's example: create key1/value1, key2/value2 and key3 with an empty value -> 204.
        tags = [
            {"value": "value1", "key": "key1"},
            {"value": "value2", "key": "key2"},
            {"value": "", "key": "key3"},
        ]
        r = await tag(c, owner, IMAGE_1, {"tags": tags, "action": "create"})
        assert r.status_code == 204, r.text
        assert r.content == b""
        image = (await c.get(f"/v2/images/{IMAGE_1}", headers=owner)).json()
        assert set(image["tags"]) == {"key1.value1", "key2.value2", "key3."}
        listed = await c.get("/v2/cloudimages", params={"tag": "key1=value1"}, headers=owner)
        assert [i["id"] for i in listed.json()["images"]] == [IMAGE_1]
        # Idempotent: the same again changes nothing; another value overwrites.
        r = await tag(c, owner, IMAGE_1, {"tags": [{"key": "key1", "value": "other"}], "action": "create"})
        assert r.status_code == 204
        assert "key1.other" in cloud.ims.images[IMAGE_1].tags
        assert "key1.value1" not in cloud.ims.images[IMAGE_1].tags
        # Delete: the page's example; a tag that is not there counts as deleted.
        r = await tag(c, owner, IMAGE_1, {"tags": [{"key": "key2"}, {"key": "nope"}], "action": "delete"})
        assert r.status_code == 204
        assert set(cloud.ims.images[IMAGE_1].tags) == {"key1.other", "key3."}
        # Refusals.
        bad: list[tuple[Any, str]] = [
            ({"tags": tags, "action": "Create"}, "IMG.0001"),  # case sensitive
            ({"tags": tags}, "IMG.0001"),
            ({"tags": [], "action": "create"}, "IMG.0001"),
            ({"tags": tags, "action": "create", "x": 1}, "IMG.0001"),
            ({"tags": [{"key": "k"}], "action": "create"}, "IMG.0115"),  # no value
            ({"tags": [{"key": "", "value": "v"}], "action": "create"}, "IMG.0115"),
            ({"tags": [{"key": "k" * 37, "value": "v"}], "action": "create"}, "IMG.0115"),
            ({"tags": [{"key": "k", "value": "v" * 44}], "action": "create"}, "IMG.0115"),
            (
                {"tags": [{"key": "k", "value": "a"}, {"key": "k", "value": "b"}], "action": "create"},
                "IMG.0115",
            ),
            ({"tags": [{"key": f"k{n}", "value": ""} for n in range(9)], "action": "create"}, "IMG.0116"),
        ]
        for body, code in bad:
            r = await tag(c, owner, IMAGE_1, body)
            assert (r.status_code, error_code(r)) == (400, code), body
        r = await tag(c, owner, UNKNOWN_IMAGE, {"tags": tags, "action": "create"})
        assert r.status_code == 404
        # Another project's path: the gateway refuses a project ID that is not the token's.
        r = await c.post(
            f"/v2/{RECEIVER}/images/{IMAGE_1}/tags/action",
            json={"tags": tags, "action": "create"},
            headers=owner,
        )
        assert r.status_code in (400, 401, 403)
        assert cloud.stats()["ims.update_image_tags"] >= 1
