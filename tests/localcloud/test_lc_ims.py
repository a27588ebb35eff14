"""IMS: create validation, job and image lifecycles on the clock, list filters, delete, export, quota."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from localcloud import LocalCloud, ManualClock

from .conftest import DB1, PROJECT, WEB1, seeded, small_seed

BUILD1 = "6f1c2d7e-0000-4000-8000-000000000005"  # SHUTOFF
PUBLIC_IMAGE = "9a0b1c2d-0000-4000-8000-0000000000a1"
JOB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def create(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> str:
    body.setdefault("name", "img-web-1")
    body.setdefault("instance_id", WEB1)
    r = await client.post("/v2/cloudimages/action", headers=auth, json=body)
    assert r.status_code == 200, r.text
    job_id: str = r.json()["job_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    return job_id


async def job(client: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def images(client: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v2/cloudimages", headers=auth, params=params)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["images"]
    return found


async def image(client: httpx.AsyncClient, auth: dict[str, str], image_id: str) -> dict[str, Any]:
    r = await client.get(f"/v2/images/{image_id}", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_create_image_lifecycle(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    job_id = await create(client, auth, description="nightly", tags=["env.prod", "team.web"])
    j = await job(client, auth, job_id)
    assert j["status"] == "INIT"
    assert j["job_type"] == "imsCreateImageByInstance"
    assert j["begin_time"] == "2026-03-01T12:00:00.000Z"
    assert j["end_time"] is None
    assert (j["error_code"], j["fail_reason"]) == (None, None)

    # The image shows up at once, queued.
    [queued] = await images(client, auth, __imagetype="private")
    assert queued["status"] == "queued"
    assert queued["name"] == "img-web-1"
    assert queued["__image_size"] == "0"

    clock.advance(1)  # INIT lasts job_init_seconds (1 s)
    j = await job(client, auth, job_id)
    assert j["status"] == "RUNNING"
    assert j["entities"]["process_percent"] == 0.0
    assert (await image(client, auth, queued["id"]))["status"] == "saving"
    clock.advance(2.5)
    assert (await job(client, auth, job_id))["entities"]["process_percent"] == 50.0

    clock.advance(2.5)
    j = await job(client, auth, job_id)
    assert j["status"] == "SUCCESS"
    assert j["end_time"] == "2026-03-01T12:00:06.000Z"
    assert JOB_TIME.match(j["end_time"])
    assert j["entities"] == {"image_name": "img-web-1", "image_id": queued["id"]}

    img = await image(client, auth, queued["id"])
    assert img["status"] == "active"
    assert img["__imagetype"] == "private"
    assert img["visibility"] == "private"
    assert img["owner"] == PROJECT
    assert img["__description"] == "nightly"
    assert img["tags"] == ["env.prod", "team.web"]
    assert img["virtual_env_type"] == "FusionCompute"
    assert img["disk_format"] == "zvhd2"
    assert int(img["__image_size"]) > 0
    assert img["created_at"] == "2026-03-01T12:00:00Z"
    assert img["updated_at"] == "2026-03-01T12:00:06Z"
    assert img["self"] == f"/v2/images/{img['id']}"
    assert img["__originalimagename"] == PUBLIC_IMAGE
    # The ECS is free again.
    await create(client, auth, name="second")


async def test_image_tags_form_and_trimming(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await create(
        client, auth, image_tags=[{"key": " env ", "value": "prod "}, {"key": "env", "value": "dev"}]
    )
    [img] = await images(client, auth, __imagetype="private")
    assert img["tags"] == ["env.dev"]  # an existing key is updated


def long(n: int, ch: str = "a") -> str:
    return ch * n


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"instance_id": WEB1}, "IMG.0013"),
        ({"name": "", "instance_id": WEB1}, "IMG.0013"),
        ({"name": long(129), "instance_id": WEB1}, "IMG.0002"),
        ({"name": "bad/name", "instance_id": WEB1}, "IMG.0003"),
        ({"name": " leading", "instance_id": WEB1}, "IMG.0003"),
        ({"name": "trailing ", "instance_id": WEB1}, "IMG.0003"),
        ({"name": "ümlaut", "instance_id": WEB1}, "IMG.0003"),
        ({"name": 5, "instance_id": WEB1}, "IMG.0001"),
        ({"name": "ok"}, "IMG.0012"),
        ({"name": "ok", "instance_id": ""}, "IMG.0012"),
        ({"name": "ok", "instance_id": WEB1, "description": long(1025)}, "IMG.0004"),
        ({"name": "ok", "instance_id": WEB1, "description": "a\rb"}, "IMG.0054"),
        ({"name": "ok", "instance_id": WEB1, "description": "<b>"}, "IMG.0054"),
        ({"name": "ok", "instance_id": WEB1, "tags": ["novalue"]}, "IMG.0115"),
        ({"name": "ok", "instance_id": WEB1, "tags": ["k.v!"]}, "IMG.0115"),
        ({"name": "ok", "instance_id": WEB1, "tags": [f"{long(37)}.v"]}, "IMG.0115"),
        ({"name": "ok", "instance_id": WEB1, "tags": [f"k.{long(44)}"]}, "IMG.0115"),
        ({"name": "ok", "instance_id": WEB1, "tags": "k.v"}, "IMG.0115"),
        ({"name": "ok", "instance_id": WEB1, "image_tags": [{"key": "k"}]}, "IMG.0115"),
        ({"name": "ok", "instance_id": WEB1, "image_tags": [{"key": " ", "value": "v"}]}, "IMG.0115"),
        (
            {"name": "ok", "instance_id": WEB1, "tags": ["a.1"], "image_tags": [{"key": "b", "value": "2"}]},
            "IMG.0115",
        ),
        ({"name": "ok", "instance_id": WEB1, "tags": [f"k{i}.v" for i in range(11)]}, "IMG.0116"),
        ({"name": "ok", "instance_id": WEB1, "min_ram": -1}, "IMG.0055"),
        ({"name": "ok", "instance_id": "6f1c2d7e-0000-4000-8000-0000000000ff"}, "IMG.0005"),
        ({"name": "ok", "instance_id": DB1}, "IMG.0008"),
        ({"name": "ok", "image_url": "bucket:file.qcow2", "min_disk": 40}, "IMG.0105"),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any], code: str
) -> None:
    r = await client.post("/v2/cloudimages/action", headers=auth, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert await images(client, auth, __imagetype="private") == []


@pytest.mark.parametrize(
    ("raw", "code"), [(b"", "IMG.0007"), (b"{}", "IMG.0007"), (b"{nope", "IMG.0001"), (b"[]", "IMG.0001")]
)
async def test_create_body_errors(
    client: httpx.AsyncClient, auth: dict[str, str], raw: bytes, code: str
) -> None:
    r = await client.post(
        "/v2/cloudimages/action", headers={**auth, "Content-Type": "application/json"}, content=raw
    )
    assert r.status_code == 400
    assert r.json() == {"error": {"message": r.json()["error"]["message"], "code": code}}


async def test_name_rules_accept_the_documented_characters(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await create(client, auth, name="Web 1.2_final-" + long(114))


async def test_ecs_with_a_task_in_progress_is_img_0010(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await create(client, auth)  # an image job running for web-1
    r = await client.post("/v2/cloudimages/action", headers=auth, json={"name": "again", "instance_id": WEB1})
    assert r.json()["error"]["code"] == "IMG.0010"
    # Powering on: status is still SHUTOFF, but a task is in progress.
    await client.post(
        f"/v1/{PROJECT}/cloudservers/action", headers=auth, json={"os-start": {"servers": [{"id": BUILD1}]}}
    )
    r = await client.post("/v2/cloudimages/action", headers=auth, json={"name": "b", "instance_id": BUILD1})
    assert r.json()["error"]["code"] == "IMG.0010"
    # And the ECS refuses power actions while an image is being made from it.
    r = await client.post(
        f"/v1/{PROJECT}/cloudservers/action", headers=auth, json={"os-start": {"servers": [{"id": WEB1}]}}
    )
    r = await client.get(f"/ecs/v1/{PROJECT}/jobs/{r.json()['job_id']}", headers=auth)
    assert r.json()["status"] == "FAIL"


def quota_seed(quota: int, running: int = 40, **limits: Any) -> dict[str, Any]:
    return small_seed(
        servers=[
            {
                "id": f"00000000-0000-4000-8000-{i:012d}",
                "name": f"s{i}",
                "project": "eu-de",
                "status": "SHUTOFF",
            }
            for i in range(6)
        ],
        limits={"image_quota": quota, "max_running_image_jobs": running, **limits},
    )


async def test_private_image_quota_is_img_0015() -> None:
    async with seeded(quota_seed(quota=2)) as (_cloud, client, auth):
        for i in range(2):
            await create(client, auth, name=f"i{i}", instance_id=f"00000000-0000-4000-8000-{i:012d}")
        r = await client.post(
            "/v2/cloudimages/action",
            headers=auth,
            json={"name": "x", "instance_id": "00000000-0000-4000-8000-000000000003"},
        )
        assert r.json()["error"]["code"] == "IMG.0015"
        quota = (await client.get("/v1/cloudimages/quota", headers=auth)).json()
        assert quota == {
            "quotas": {"resources": [{"type": "image", "used": 2, "quota": 2, "min": 1, "max": 1000}]}
        }


async def test_running_job_cap_is_img_0060() -> None:
    async with seeded(quota_seed(quota=50, running=2)) as (cloud, client, auth):
        for i in range(2):
            await create(client, auth, name=f"i{i}", instance_id=f"00000000-0000-4000-8000-{i:012d}")
        r = await client.post(
            "/v2/cloudimages/action",
            headers=auth,
            json={"name": "x", "instance_id": "00000000-0000-4000-8000-000000000003"},
        )
        assert r.json()["error"] == {
            "message": "The number of tasks exceeds the flow control limit.",
            "code": "IMG.0060",
        }
        cloud.advance(60)
        await create(client, auth, name="x", instance_id="00000000-0000-4000-8000-000000000003")


async def test_unique_names_only_when_switched_on() -> None:
    async with seeded(quota_seed(quota=50, unique_image_names=True)) as (_cloud, client, auth):
        await create(client, auth, name="same", instance_id="00000000-0000-4000-8000-000000000000")
        r = await client.post(
            "/v2/cloudimages/action",
            headers=auth,
            json={"name": "same", "instance_id": "00000000-0000-4000-8000-000000000001"},
        )
        assert r.json()["error"]["code"] == "IMG.0009"


async def test_failed_job_kills_the_image(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(
        "/_local/faults",
        json={
            "kind": "job_fail",
            "operation": "ims.create_image",
            "error_code": "IMG.0014",
            "fail_reason": "disk snapshot failed",
        },
    )
    assert r.status_code == 201
    job_id = await create(client, auth)
    cloud.advance(1)
    [img] = await images(client, auth, __imagetype="private")
    assert img["status"] == "saving"
    cloud.advance(5)
    j = await job(client, auth, job_id)
    assert j["status"] == "FAIL"
    assert (j["error_code"], j["fail_reason"]) == ("IMG.0014", "disk snapshot failed")
    assert (await image(client, auth, img["id"]))["status"] == "killed"
    assert cloud.ims.images[img["id"]].status == "killed"
    # A killed image can be deleted.
    assert (await client.delete(f"/v2/images/{img['id']}", headers=auth)).status_code == 204


async def test_delete_while_creating_is_img_0090_then_204(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await create(client, auth)
    [img] = await images(client, auth, __imagetype="private")
    r = await client.delete(f"/v2/images/{img['id']}", headers=auth)
    assert r.status_code == 400
    assert r.json() == {
        "error": {"message": "The image being created cannot be deleted.", "code": "IMG.0090"}
    }
    clock.advance(3)
    assert (await client.delete(f"/v2/images/{img['id']}", headers=auth)).json()["error"][
        "code"
    ] == "IMG.0090"
    clock.advance(3)
    r = await client.delete(f"/v2/images/{img['id']}", headers=auth)
    assert r.status_code == 204
    assert r.content == b""
    assert await images(client, auth, __imagetype="private") == []
    r = await client.get(f"/v2/images/{img['id']}", headers=auth)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "IMG.0144"
    assert (await client.delete(f"/v2/images/{img['id']}", headers=auth)).status_code == 404


async def test_public_image_cannot_be_deleted(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.delete(f"/v2/images/{PUBLIC_IMAGE}", headers=auth)
    assert r.json()["error"]["code"] == "IMG.0094"


RETENTION_SEED = small_seed(
    images=[
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "name": f"web-1-{i}",
            "project": "eu-de",
            "tags": ["env.prod", f"n.{i}"],
            "created_at": f"2026-01-0{i + 1}T00:00:00Z",
            "instance_id": WEB1,
        }
        for i in range(5)
    ]
    + [
        {"id": "10000000-0000-4000-8000-000000000000", "name": "other", "project": "eu-nl"},
        {
            "id": "20000000-0000-4000-8000-000000000000",
            "name": "gold",
            "visibility": "public",
            "created_at": "2025-01-01T00:00:00Z",
        },
        {
            "id": "30000000-0000-4000-8000-000000000000",
            "name": "broken",
            "project": "eu-de",
            "status": "killed",
            "created_at": "2025-06-01T00:00:00Z",
        },
    ],
)
RETENTION_SEED["domains"][0]["projects"].append({"id": "f" * 32, "name": "eu-nl"})


async def test_list_filters_sorting_and_paging() -> None:
    async with seeded(RETENTION_SEED) as (_cloud, client, auth):

        def names(found: list[dict[str, Any]]) -> list[str]:
            return [i["name"] for i in found]

        everything = names(await images(client, auth))
        assert everything == ["web-1-4", "web-1-3", "web-1-2", "web-1-1", "web-1-0", "broken", "gold"]
        assert "other" not in everything  # another project's private image
        assert names(await images(client, auth, __imagetype="gold")) == ["gold"]
        assert len(await images(client, auth, __imagetype="private")) == 6
        assert len(await images(client, auth, owner=PROJECT)) == 6
        assert names(await images(client, auth, name="web-1-2")) == ["web-1-2"]
        assert names(await images(client, auth, name="web-1")) == []  # exact match
        assert names(await images(client, auth, status="killed")) == ["broken"]
        assert names(await images(client, auth, id="00000000-0000-4000-8000-000000000001")) == ["web-1-1"]
        assert len(await images(client, auth, tag="env=prod")) == 5
        assert names(await images(client, auth, tag="n=3")) == ["web-1-3"]
        assert names(await images(client, auth, visibility="public")) == ["gold"]
        assert names(
            await images(client, auth, created_at="lt:2026-01-03T00:00:00Z", __imagetype="private")
        ) == ["web-1-1", "web-1-0", "broken"]
        assert names(await images(client, auth, created_at="gte:2026-01-04 00:00:00")) == [
            "web-1-4",
            "web-1-3",
        ]
        assert names(await images(client, auth, sort_key="name", sort_dir="asc", limit=3)) == [
            "broken",
            "gold",
            "web-1-0",
        ]
        page1 = await images(client, auth, __imagetype="private", limit=2)
        page2 = await images(client, auth, __imagetype="private", limit=2, marker=page1[-1]["id"])
        assert names(page1 + page2) == ["web-1-4", "web-1-3", "web-1-2", "web-1-1"]
        for bad in (
            {"sort_key": "colour"},
            {"created_at": "around:2026"},
            {"limit": "x"},
            {"marker": "nope"},
        ):
            r = await client.get("/v2/cloudimages", headers=auth, params=bad)
            assert r.status_code == 400, bad


async def test_default_list_limit_is_500() -> None:
    images_seed = [
        {"id": f"00000000-0000-4000-8000-{i:012d}", "name": f"i{i}", "project": "eu-de"} for i in range(520)
    ]
    async with seeded(small_seed(images=images_seed)) as (_cloud, c, auth):
        assert len((await c.get("/v2/cloudimages", headers=auth)).json()["images"]) == 500


async def active_image(client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock) -> str:
    job_id = await create(client, auth)
    clock.advance(6)
    image_id: str = (await job(client, auth, job_id))["entities"]["image_id"]
    return image_id


async def test_export_writes_the_object_into_the_bucket(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    image_id = await active_image(client, auth, clock)
    r = await client.post(
        f"/v1/cloudimages/{image_id}/file",
        headers=auth,
        json={"bucket_url": "imsflow-exports:web-1.qcow2", "file_format": "qcow2"},
    )
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    assert cloud.obs["imsflow-exports"] == {}
    j = await job(client, auth, job_id)
    assert (j["status"], j["job_type"]) == ("INIT", "imsNativeExportImageJob")
    assert (await client.delete(f"/v2/images/{image_id}", headers=auth)).json()["error"]["code"] == "IMG.0148"
    clock.advance(6)
    j = await job(client, auth, job_id)
    assert j["status"] == "SUCCESS"
    assert j["entities"] == {"image_id": image_id}
    obj = cloud.obs["imsflow-exports"]["web-1.qcow2"]
    assert obj["image_id"] == image_id
    assert obj["file_format"] == "qcow2"
    # The same file again fails in the job: it exists.
    r = await client.post(
        f"/v1/cloudimages/{image_id}/file",
        headers=auth,
        json={"bucket_url": "imsflow-exports:web-1.qcow2", "file_format": "qcow2"},
    )
    clock.advance(6)
    assert (await job(client, auth, r.json()["job_id"]))["error_code"] == "IMG.0070"


async def test_quick_export(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    image_id = await active_image(client, auth, clock)
    r = await client.post(
        f"/v1/cloudimages/{image_id}/file",
        headers=auth,
        json={"bucket_url": "imsflow-exports:fast.zvhd2", "is_quick_export": True},
    )
    assert r.status_code == 200
    clock.advance(10)
    assert cloud.obs["imsflow-exports"]["fast.zvhd2"]["file_format"] == "zvhd2"


async def test_export_to_unknown_bucket_fails_in_the_job(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    image_id = await active_image(client, auth, clock)
    r = await client.post(
        f"/v1/cloudimages/{image_id}/file",
        headers=auth,
        json={"bucket_url": "no-such-bucket:x.vhd", "file_format": "vhd"},
    )
    assert r.status_code == 200
    clock.advance(2)
    j = await job(client, auth, r.json()["job_id"])
    assert j["status"] == "FAIL"
    assert j["error_code"] == "IMG.0069"
    assert j["fail_reason"] == "The specified bucket cannot be accessed."
    assert "no-such-bucket" not in cloud.obs


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"bucket_url": "imsflow-exports:x", "file_format": "raw"}, "IMG.0072"),
        ({"bucket_url": "imsflow-exports:x"}, "IMG.0072"),
        ({"bucket_url": "imsflow-exports:x", "file_format": "qcow2", "is_quick_export": True}, "IMG.0001"),
        ({"file_format": "qcow2"}, "IMG.0068"),
        ({"bucket_url": "imsflow-exports:", "file_format": "qcow2"}, "IMG.0073"),
        ({"bucket_url": "Bad_Bucket:x", "file_format": "qcow2"}, "IMG.0109"),
    ],
)
async def test_export_refusals(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock, body: dict[str, Any], code: str
) -> None:
    image_id = await active_image(client, auth, clock)
    r = await client.post(f"/v1/cloudimages/{image_id}/file", headers=auth, json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code


async def test_export_needs_an_active_private_image(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    body = {"bucket_url": "imsflow-exports:x.qcow2", "file_format": "qcow2"}
    r = await client.post(f"/v1/cloudimages/{PUBLIC_IMAGE}/file", headers=auth, json=body)
    assert r.json()["error"]["code"] == "IMG.0077"
    await create(client, auth)
    [img] = await images(client, auth, __imagetype="private")
    r = await client.post(f"/v1/cloudimages/{img['id']}/file", headers=auth, json=body)
    assert r.json()["error"]["code"] == "IMG.0046"
    r = await client.post(
        "/v1/cloudimages/00000000-0000-4000-8000-00000000dead/file", headers=auth, json=body
    )
    assert r.status_code == 404


async def test_quota_counts_private_images(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.get("/v1/cloudimages/quota", headers=auth)
    assert r.json()["quotas"]["resources"][0] == {
        "type": "image",
        "used": 0,
        "quota": 50,
        "min": 1,
        "max": 1000,
    }
    await create(client, auth)
    r = await client.get("/v1/cloudimages/quota", headers=auth)
    assert r.json()["quotas"]["resources"][0]["used"] == 1


async def test_stats_count_every_operation(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job_id = await create(client, auth)
    for _ in range(3):
        await job(client, auth, job_id)
    await images(client, auth)
    await client.get("/v1/cloudimages/quota", headers=auth)
    await client.get(f"/v1/{PROJECT}/cloudservers/{WEB1}", headers=auth)
    r = await client.get("/_local/stats")
    stats = r.json()
    assert stats == cloud.stats()
    assert stats["iam.create_token"] == 1
    assert stats["ims.create_image"] == 1
    assert stats["ims.show_job"] == 3
    assert stats["ims.list_images"] == 1
    assert stats["ims.show_quota"] == 1
    assert stats["ecs.show_server"] == 1
    assert stats["ims.delete_image"] == 0
    await client.post("/_local/reset")
    assert set(cloud.stats().values()) == {0}
    assert cloud.ims.images[PUBLIC_IMAGE].status == "active"
    assert len(cloud.ims.images) == 2


# ---- fidelity: tag queries, job queries, body fields (localcloud/FIDELITY.md) -------------------------


async def test_tag_query_takes_only_key_equals_value() -> None:
    async with seeded(RETENTION_SEED) as (_cloud, client, auth):
        # Stored as "n.3" (the old Key.Value form); the page queries it as tag=n=3.
        assert [i["name"] for i in await images(client, auth, tag="n=3")] == ["web-1-3"]
        assert await images(client, auth, tag="n=9") == []
        assert await images(client, auth, tag="n=") == []  # key n with an empty value: none stored
        assert await images(client, auth, tag="env=prod=x") == []  # value "prod=x"
        for old_form in ("env.prod", "n.3", "env", "=prod"):
            r = await client.get("/v2/cloudimages", headers=auth, params={"tag": old_form})
            assert r.status_code == 400, old_form
            assert r.json() == {
                "error": {"message": "The request message format is invalid.", "code": "IMG.0001"}
            }


async def test_unknown_ims_job_is_img_0023_on_every_ims_path(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    unknown = "0" * 32
    for path in (
        f"/ims/v1/{PROJECT}/jobs/{unknown}",
        f"/ims/v1/cloudimages/job/{unknown}",
        f"/v1/cloudimages/job/{unknown}",
    ):
        r = await client.get(path, headers=auth)
        assert r.status_code == 400, path
        assert r.json() == {
            "error": {"message": "An exception occurred during task query.", "code": "IMG.0023"}
        }, path


async def test_ecs_job_id_is_unknown_to_the_ims_job_paths(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(
        f"/v1/{PROJECT}/cloudservers/action", headers=auth, json={"os-stop": {"servers": [{"id": DB1}]}}
    )
    ecs_job_id = r.json()["job_id"]
    for path in (f"/ims/v1/{PROJECT}/jobs/{ecs_job_id}", f"/v1/cloudimages/job/{ecs_job_id}"):
        r = await client.get(path, headers=auth)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0023"), path


async def test_job_progress_path_of_huawei_cloud(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    job_id = await create(client, auth, name="progress-1")
    seen = []
    for path in (f"/ims/v1/cloudimages/job/{job_id}", f"/v1/cloudimages/job/{job_id}"):
        r = await client.get(path, headers=auth)
        assert r.status_code == 200, r.text
        seen.append(r.json())
    assert seen[0] == seen[1]
    body = seen[0]
    assert set(body) == {
        "status",
        "job_id",
        "job_type",
        "begin_time",
        "end_time",
        "error_code",
        "fail_reason",
        "entities",
    }
    old = await job(client, auth, job_id)
    for key in ("status", "job_id", "job_type", "begin_time", "end_time", "error_code", "fail_reason"):
        assert body[key] == old[key], key
    image_id = body["entities"]["image_id"]
    assert body["status"] == "INIT"
    assert body["entities"] == {"image_id": image_id, "image_name": "progress-1", "process_percent": 0.0}
    assert cloud.ims.images[image_id].name == "progress-1"

    clock.advance(3)
    running = (await client.get(f"/v1/cloudimages/job/{job_id}", headers=auth)).json()
    assert running["status"] == "RUNNING"
    assert isinstance(running["entities"]["process_percent"], float)
    assert 0 < running["entities"]["process_percent"] < 100

    clock.advance(3)
    done = (await client.get(f"/v1/cloudimages/job/{job_id}", headers=auth)).json()
    assert done["status"] == "SUCCESS"
    assert done["entities"]["process_percent"] == 100.0
    assert done["entities"]["image_id"] == (await job(client, auth, job_id))["entities"]["image_id"]
    assert JOB_TIME.match(done["end_time"])

    stats = cloud.stats()
    assert stats["ims.show_job_progress"] == 4
    assert stats["ims.show_job"] == 2


async def test_job_progress_needs_a_token_and_the_tokens_project() -> None:
    other = {"id": "f" * 32, "name": "eu-nl"}
    data = small_seed(servers=[{"id": WEB1, "name": "w", "project": "eu-de", "status": "SHUTOFF"}])
    data["domains"][0]["projects"].append(other)
    async with seeded(data) as (_cloud, client, auth):
        r = await client.post("/v2/cloudimages/action", headers=auth, json={"name": "x", "instance_id": WEB1})
        job_id = r.json()["job_id"]
        r = await client.get(f"/v1/cloudimages/job/{job_id}")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "IMG.0087")
        r = await client.post(
            "/v3/auth/tokens",
            json={
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {"user": {"name": "u", "password": "p", "domain": {"name": "d"}}},
                    },
                    "scope": {"project": {"name": "eu-nl"}},
                }
            },
        )
        nl = {"X-Auth-Token": r.headers["X-Subject-Token"]}
        r = await client.get(f"/v1/cloudimages/job/{job_id}", headers=nl)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0023")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "ok", "instance_id": WEB1, "image_tag": ["a.b"]},  # misspelt image_tags
        {"name": "ok", "instance_id": WEB1, "Description": "x"},
        {"name": "ok", "instance_id": WEB1, "architecture": "x86"},  # Huawei Cloud only
    ],
)
async def test_create_refuses_undocumented_fields(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    r = await client.post("/v2/cloudimages/action", headers=auth, json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "IMG.0001"


async def test_bodies_need_json_content_type(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    raw = b'{"name": "ok", "instance_id": "' + WEB1.encode() + b'"}'
    for headers in (
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ):
        r = await client.post("/v2/cloudimages/action", headers={**auth, **headers}, content=raw)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0001"), headers
    ok = {**auth, "Content-Type": "application/json;charset=utf8"}
    assert (await client.post("/v2/cloudimages/action", headers=ok, content=raw)).status_code == 200


async def test_export_refuses_undocumented_fields(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    image_id = await active_image(client, auth, clock)
    body = {"bucket_url": "imsflow-exports:x.qcow2", "file_format": "qcow2", "quick_export": True}
    r = await client.post(f"/v1/cloudimages/{image_id}/file", headers=auth, json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0001")


async def test_delete_body_is_only_delete_backup(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    image_id = await active_image(client, auth, clock)
    for body in ({"delete_backup": "yes"}, {"deleteBackup": True}, [True]):
        r = await client.request("DELETE", f"/v2/images/{image_id}", headers=auth, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0001"), body
    r = await client.request("DELETE", f"/v2/images/{image_id}", headers=auth, json={"delete_backup": False})
    assert r.status_code == 204


async def test_image_gone_is_404(client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock) -> None:
    image_id = await active_image(client, auth, clock)
    assert (await client.delete(f"/v2/images/{image_id}", headers=auth)).status_code == 204
    for method in ("GET", "DELETE"):
        r = await client.request(method, f"/v2/images/{image_id}", headers=auth)
        assert r.status_code == 404, method
        assert r.json() == {"error": {"message": "The image does not exist.", "code": "IMG.0144"}}


async def test_list_refuses_undocumented_query_parameters(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for params in ({"imagetype": "private"}, {"tags": "a=b"}, {"Name": "x"}, {"__image_size": "0"}):
        r = await client.get("/v2/cloudimages", headers=auth, params=params)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0001"), params
    # Documented filters the local images answer without an error.
    assert len(await images(client, auth, __os_bit="64")) == 2
    assert await images(client, auth, __os_bit="32") == []
    assert await images(client, auth, __whole_image="true") == []
    assert await images(client, auth, __support_xen="true") == []
