"""Image sharing on the local cloud, from the pages' examples: ims_apis/image_sharing/*.rst,
restrictions_on_image_sharing.rst, the job page's member jobs, querying_images.rst (``__imagetype``,
``member_status``) and the Glance members page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from localcloud import LocalCloud, ManualClock, parse_seed

from .conftest import PROJECT, START, password_auth

# The pages' example IDs.
IMAGE_1 = "d164b5df-1bc3-4c3f-893e-3e471fd16e64"
IMAGE_2 = "0b680482-acaa-4045-b14c-9a8c7dfe9c70"
RECEIVER = "edc89b490d7d4392898e19b2deb34797"
OTHER = "9c61004714024f9586705d090530f9fa"
PUBLIC = "bc6bed6e-ba3a-4447-afcc-449174a3eb52"
SAVING = "11111111-2222-4333-8444-555555555555"
UNKNOWN_PROJECT = "ffffffffffffffffffffffffffffffff"

SEED: dict[str, Any] = {
    "domains": [
        {
            "name": "d",
            "users": [{"name": "u", "password": "p"}],
            "projects": [{"id": PROJECT, "name": "eu-de"}],
        },
        {
            "name": "r",
            "users": [{"name": "ru", "password": "rp"}],
            "projects": [{"id": RECEIVER, "name": "eu-de"}],
        },
        {
            "name": "o",
            "users": [{"name": "ou", "password": "op"}],
            "projects": [{"id": OTHER, "name": "eu-de"}],
        },
    ],
    "images": [
        {"id": IMAGE_1, "name": "golden-1", "project": PROJECT},
        {"id": IMAGE_2, "name": "golden-2", "project": PROJECT},
        {"id": SAVING, "name": "half-made", "project": PROJECT, "status": "saving"},
        {"id": PUBLIC, "name": "CentOS 7.3 64bit", "visibility": "public"},
    ],
}

Clients = tuple[LocalCloud, httpx.AsyncClient, dict[str, str], dict[str, str]]


@asynccontextmanager
async def two_projects(
    limits: dict[str, Any] | None = None,
) -> AsyncIterator[Clients]:
    """The owner's and the receiver's tokens on one cloud."""
    data = dict(SEED)
    if limits:
        data["limits"] = limits
    cloud = LocalCloud(parse_seed(data), ManualClock(START))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cloud.app), base_url="http://127.0.0.1"
    ) as c:
        tokens = []
        for user, pw, dom in (("u", "p", "d"), ("ru", "rp", "r")):
            r = await c.post("/v3/auth/tokens", json=password_auth(user, pw, dom))
            assert r.status_code == 201, r.text
            tokens.append({"X-Auth-Token": r.headers["X-Subject-Token"]})
        yield cloud, c, tokens[0], tokens[1]


async def finished_job(
    cloud: LocalCloud, c: httpx.AsyncClient, auth: dict[str, str], r: httpx.Response
) -> Any:
    """The job ``r`` answered (``{"job_id"}``, as the pages' example responses), after it ended."""
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"job_id"}
    cloud.advance(10)
    job = await c.get(f"/v1/cloudimages/job/{r.json()['job_id']}", headers=auth)
    assert job.status_code == 200, job.text
    return job.json()


def error_code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


async def share(
    c: httpx.AsyncClient, auth: dict[str, str], images: list[str], projects: list[str]
) -> httpx.Response:
    return await c.post(
        "/v1/cloudimages/members", json={"images": images, "projects": projects}, headers=auth
    )


async def listed(c: httpx.AsyncClient, auth: dict[str, str], **query: str) -> list[str]:
    r = await c.get("/v2/cloudimages", params=query, headers=auth)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["images"]]


async def test_share_accept_list_remove_as_the_pages_show() -> None:
    async with two_projects() as (cloud, c, owner, receiver):
        # Adding members: the page's example request (two images, two projects) -> a job id.
        r = await share(c, owner, [IMAGE_1, IMAGE_2], [OTHER, RECEIVER])
        job = await finished_job(cloud, c, owner, r)
        assert job["job_type"] == "imsAddImageMembersJob"
        assert job["status"] == "SUCCESS"
        assert job["entities"] == {
            "results": [
                {"image_id": IMAGE_1, "status": "success"},
                {"image_id": IMAGE_2, "status": "success"},
            ]
        }
        # Pending: not in the receiver's list, only under member_status=pending ("Unaccepted images").
        assert IMAGE_1 not in await listed(c, receiver)
        pending = await listed(
            c, receiver, member_status="pending", visibility="shared", __imagetype="shared"
        )
        assert set(pending) == {IMAGE_1, IMAGE_2}

        # The owner sees the image as shared ("images you share with other tenants ... is shared").
        own = (await c.get(f"/v2/images/{IMAGE_1}", headers=owner)).json()
        assert own["__imagetype"] == "shared"
        members = await c.get(f"/v2/images/{IMAGE_1}/members", headers=owner)
        assert members.status_code == 200
        body = members.json()
        assert body["schema"] == "/v2/schemas/members"
        assert {m["member_id"]: m["status"] for m in body["members"]} == {
            OTHER: "pending",
            RECEIVER: "pending",
        }
        assert set(body["members"][0]) == {
            "status",
            "created_at",
            "updated_at",
            "image_id",
            "member_id",
            "schema",
        }

        # The receiver accepts: the page's example request (project_id, status accepted).
        r = await c.put(
            "/v1/cloudimages/members",
            json={"images": [IMAGE_1, IMAGE_2], "project_id": RECEIVER, "status": "accepted"},
            headers=receiver,
        )
        job = await finished_job(cloud, c, receiver, r)
        assert job["job_type"] == "imsUpdateImageMembersJob"
        assert job["status"] == "SUCCESS"
        # "Available shared images": member_status=accepted&visibility=shared&__imagetype=shared
        accepted = await listed(
            c, receiver, member_status="accepted", visibility="shared", __imagetype="shared"
        )
        assert set(accepted) == {IMAGE_1, IMAGE_2}
        assert IMAGE_1 in await listed(c, receiver)
        seen = (await c.get(f"/v2/images/{IMAGE_1}", headers=receiver)).json()
        assert (seen["__imagetype"], seen["visibility"], seen["owner"]) == ("shared", "shared", PROJECT)
        # A member sees itself among the members.
        mine = (await c.get(f"/v2/images/{IMAGE_1}/members", headers=receiver)).json()["members"]
        assert [(m["member_id"], m["status"]) for m in mine] == [(RECEIVER, "accepted")]

        # Deleting members: the page's example -> imsDelImageMembersJob with results [].
        r = await c.request(
            "DELETE",
            "/v1/cloudimages/members",
            json={"images": [IMAGE_1, IMAGE_2], "projects": [OTHER, RECEIVER]},
            headers=owner,
        )
        job = await finished_job(cloud, c, owner, r)
        assert (job["job_type"], job["status"], job["entities"]) == (
            "imsDelImageMembersJob",
            "SUCCESS",
            {"results": []},
        )
        assert IMAGE_1 not in await listed(c, receiver)
        assert (await c.get(f"/v2/images/{IMAGE_1}", headers=receiver)).status_code == 404
        assert (await c.get(f"/v2/images/{IMAGE_1}", headers=owner)).json()["__imagetype"] == "private"


async def test_a_rejected_image_leaves_the_list_but_stays_usable() -> None:
    async with two_projects() as (cloud, c, owner, receiver):
        await finished_job(cloud, c, owner, await share(c, owner, [IMAGE_1], [RECEIVER]))
        r = await c.put(
            "/v1/cloudimages/members",
            json={"images": [IMAGE_1], "project_id": RECEIVER, "status": "rejected"},
            headers=receiver,
        )
        assert (await finished_job(cloud, c, receiver, r))["status"] == "SUCCESS"
        assert IMAGE_1 not in await listed(c, receiver)
        assert await listed(c, receiver, member_status="rejected", visibility="shared") == [IMAGE_1]
        assert (await c.get(f"/v2/images/{IMAGE_1}", headers=receiver)).status_code == 200


async def test_the_job_is_init_then_running_then_success() -> None:
    async with two_projects() as (cloud, c, owner, _receiver):
        r = await share(c, owner, [IMAGE_1], [RECEIVER])
        path = f"/v1/{PROJECT}/jobs/{r.json()['job_id']}"
        seen = []
        for _ in range(4):
            seen.append((await c.get(path, headers=owner)).json()["status"])
            cloud.advance(1)
        assert seen == ["INIT", "RUNNING", "RUNNING", "SUCCESS"]
        # A pending member once the job succeeded.
        assert cloud.ims.images[IMAGE_1].members[RECEIVER].status == "pending"


@pytest.mark.parametrize(
    ("images", "projects", "code"),
    [
        ([IMAGE_1], [PROJECT], "IMG.0076"),  # "You cannot share an image with yourself."
        ([PUBLIC], [RECEIVER], "IMG.0089"),  # "The public image cannot be shared."
        (["00000000-0000-4000-8000-000000000000"], [RECEIVER], "IMG.0027"),
        ([SAVING], [RECEIVER], "IMG.0046"),
        ([IMAGE_1], [UNKNOWN_PROJECT], "IMG.0108"),  # "The tenant ID was not found in the current region."
    ],
)
async def test_refusals(images: list[str], projects: list[str], code: str) -> None:
    async with two_projects() as (_cloud, c, owner, _receiver):
        r = await share(c, owner, images, projects)
        assert (r.status_code, error_code(r)) == (400, code)


async def test_another_tenants_image_cannot_be_shared() -> None:
    async with two_projects() as (cloud, c, owner, receiver):
        await finished_job(cloud, c, owner, await share(c, owner, [IMAGE_1], [RECEIVER]))
        r = await share(c, receiver, [IMAGE_1], [OTHER])
        assert (r.status_code, error_code(r)) == (400, "IMG.0106")


async def test_member_limit() -> None:
    async with two_projects({"max_image_members": 1}) as (_cloud, c, owner, _receiver):
        r = await share(c, owner, [IMAGE_1], [RECEIVER, OTHER])
        assert (r.status_code, error_code(r)) == (400, "IMG.0088")


@pytest.mark.parametrize(
    "body",
    [
        {"images": [IMAGE_1]},
        {"projects": [RECEIVER]},
        {"images": [], "projects": [RECEIVER]},
        {"images": IMAGE_1, "projects": [RECEIVER]},
        {"images": [IMAGE_1], "projects": [RECEIVER], "status": "accepted"},
    ],
)
async def test_bodies_outside_the_request_table(body: dict[str, Any]) -> None:
    async with two_projects() as (_cloud, c, owner, _receiver):
        r = await c.post("/v1/cloudimages/members", json=body, headers=owner)
        assert (r.status_code, error_code(r)) == (400, "IMG.0001")


async def test_adding_a_member_twice_fails_the_job_and_removing_a_non_member_too() -> None:
    async with two_projects() as (cloud, c, owner, _receiver):
        await finished_job(cloud, c, owner, await share(c, owner, [IMAGE_1], [RECEIVER]))
        job = await finished_job(cloud, c, owner, await share(c, owner, [IMAGE_1], [RECEIVER]))
        assert (job["status"], job["error_code"]) == ("FAIL", "IMG.0112")
        r = await c.request(
            "DELETE",
            "/v1/cloudimages/members",
            json={"images": [IMAGE_1], "projects": [OTHER]},
            headers=owner,
        )
        job = await finished_job(cloud, c, owner, r)
        assert (job["status"], job["error_code"]) == ("FAIL", "IMG.0113")


async def test_update_refusals() -> None:
    async with two_projects() as (cloud, c, owner, receiver):
        await finished_job(cloud, c, owner, await share(c, owner, [IMAGE_1], [RECEIVER]))
        put = "/v1/cloudimages/members"
        for body, code in (
            ({"images": [IMAGE_1], "project_id": RECEIVER, "status": "pending"}, "IMG.0001"),
            ({"images": [IMAGE_1], "status": "accepted"}, "IMG.0001"),
            ({"images": [IMAGE_1], "project_id": OTHER, "status": "accepted"}, "IMG.0067"),
            ({"images": [IMAGE_2], "project_id": RECEIVER, "status": "accepted"}, "IMG.0027"),
        ):
            r = await c.put(put, json=body, headers=receiver)
            assert (r.status_code, error_code(r)) == (400, code), body
        # The page's CBR example: vault_id is a documented field.
        r = await c.put(
            put,
            json={
                "images": [IMAGE_1],
                "project_id": RECEIVER,
                "status": "accepted",
                "vault_id": "d14r5tef-1bc3-4c4f-823e-3e471rg65e65",
            },
            headers=receiver,
        )
        assert r.status_code == 200


async def test_member_status_must_be_a_documented_value() -> None:
    async with two_projects() as (_cloud, c, _owner, receiver):
        r = await c.get("/v2/cloudimages", params={"member_status": "maybe"}, headers=receiver)
        assert (r.status_code, error_code(r)) == (400, "IMG.0001")


async def test_member_status_needs_visibility_shared() -> None:
    """The page: "To use this parameter, set visibility to shared during the query."."""
    async with two_projects() as (_cloud, c, _owner, receiver):
        r = await c.get("/v2/cloudimages", params={"member_status": "accepted"}, headers=receiver)
        assert (r.status_code, error_code(r)) == (400, "IMG.0001")


async def test_members_of_an_image_nobody_shared_with_you_is_404() -> None:
    async with two_projects() as (_cloud, c, _owner, receiver):
        r = await c.get(f"/v2/images/{IMAGE_1}/members", headers=receiver)
        assert r.status_code == 404
