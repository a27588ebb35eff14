"""Data disks: volumes_attached in the ECS bodies, and data-disk images (``data_images``) with their job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from localcloud import LocalCloud, load_seed, parse_seed
from localcloud.seed import stable_uuid

from .conftest import PROJECT, seeded, small_seed

ECS_A = "a0000000-0000-4000-8000-000000000001"  # SHUTOFF, two data disks
ECS_B = "a0000000-0000-4000-8000-000000000002"  # SHUTOFF, one data disk (a count in the seed)
ECS_C = "a0000000-0000-4000-8000-000000000003"  # ACTIVE, one data disk
ECS_NL = "a0000000-0000-4000-8000-000000000004"  # another project's
SYS_A = "5a000000-0000-4000-8000-000000000000"
DISK_A1 = "da000000-0000-4000-8000-000000000001"
DISK_A2 = "da000000-0000-4000-8000-000000000002"
DISK_B1 = stable_uuid("volume", ECS_B, "1")
DISK_C1 = stable_uuid("volume", ECS_C, "1")
DISK_NL = "da000000-0000-4000-8000-0000000000ff"
NL = "f" * 32


def disk_seed(**extra: Any) -> dict[str, Any]:
    data = small_seed(
        servers=[
            {
                "id": ECS_A,
                "name": "a",
                "project": "eu-de",
                "status": "SHUTOFF",
                "system_disk_gb": 40,
                "system_volume_id": SYS_A,
                "data_disks": [{"id": DISK_A1, "size": 100}, {"id": DISK_A2, "size": 20}],
            },
            {"id": ECS_B, "name": "b", "project": "eu-de", "status": "SHUTOFF", "data_disks": 1},
            {"id": ECS_C, "name": "c", "project": "eu-de", "status": "ACTIVE", "data_disks": 1},
            {
                "id": ECS_NL,
                "name": "nl",
                "project": "eu-nl",
                "status": "SHUTOFF",
                "data_disks": [{"id": DISK_NL}],
            },
        ],
        **extra,
    )
    data["domains"][0]["projects"].append({"id": NL, "name": "eu-nl"})
    return data


async def create(client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]) -> str:
    r = await client.post("/v2/cloudimages/action", headers=auth, json=body)
    assert r.status_code == 200, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def job(client: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def image(client: httpx.AsyncClient, auth: dict[str, str], image_id: str) -> dict[str, Any]:
    r = await client.get(f"/v2/images/{image_id}", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def private_images(
    client: httpx.AsyncClient, auth: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    r = await client.get("/v2/cloudimages", headers=auth, params={"__imagetype": "private", **params})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["images"]
    return found


async def quota_used(client: httpx.AsyncClient, auth: dict[str, str]) -> int:
    r = await client.get("/v1/cloudimages/quota", headers=auth)
    used: int = r.json()["quotas"]["resources"][0]["used"]
    return used


SYSTEM: dict[str, Any] = {"name": "a-sys", "instance_id": ECS_A, "tags": ["role.sys"]}
DATA: dict[str, Any] = {
    "data_images": [
        {"name": "a-data-1", "volume_id": DISK_A1, "description": "first disk", "tags": ["disk.one"]},
        {"name": "a-data-2", "volume_id": DISK_A2, "image_tags": [{"key": "disk", "value": "two"}]},
    ],
}
#: The page's note on data_images: "You cannot specify instance_id." Refused.
COMBINED: dict[str, Any] = {**SYSTEM, **DATA}


# ---- ECS: volumes_attached ------------------------------------------------------------------------------


async def test_volumes_attached_lists_the_system_disk_then_the_data_disks() -> None:
    async with seeded(disk_seed()) as (_cloud, client, auth):
        r = await client.get(f"/v1/{PROJECT}/cloudservers/{ECS_A}", headers=auth)
        volumes = r.json()["server"]["os-extended-volumes:volumes_attached"]
        assert volumes == [
            {"id": SYS_A, "delete_on_termination": "false", "device": "/dev/vda", "bootIndex": "0"},
            {"id": DISK_A1, "delete_on_termination": "false", "device": "/dev/vdb", "bootIndex": "-1"},
            {"id": DISK_A2, "delete_on_termination": "false", "device": "/dev/vdc", "bootIndex": "-1"},
        ]
        # A count of data disks: stable derived ids; the system volume's id derived as well.
        r = await client.get(f"/v1/{PROJECT}/cloudservers/detail", headers=auth, params={"name": "b"})
        [server] = r.json()["servers"]
        assert [
            (v["id"], v["bootIndex"], v["device"]) for v in server["os-extended-volumes:volumes_attached"]
        ] == [
            (stable_uuid("volume", ECS_B), "0", "/dev/vda"),
            (DISK_B1, "-1", "/dev/vdb"),
        ]


async def test_servers_without_data_disks_keep_one_system_volume(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    web1 = "6f1c2d7e-0000-4000-8000-000000000001"
    r = await client.get(f"/v1/{PROJECT}/cloudservers/{web1}", headers=auth)
    assert r.json()["server"]["os-extended-volumes:volumes_attached"] == [
        {
            "id": stable_uuid("volume", web1),
            "delete_on_termination": "false",
            "device": "/dev/vda",
            "bootIndex": "0",
        }
    ]


def test_seeded_volumes_are_the_same_after_a_reset() -> None:
    cloud = LocalCloud(parse_seed(disk_seed()))
    before = [v.id for v in cloud.ecs.servers[ECS_B].volumes]
    cloud.reset()
    assert [v.id for v in cloud.ecs.servers[ECS_B].volumes] == before
    assert [v.size_gb for v in cloud.ecs.servers[ECS_A].volumes] == [40, 100, 20]


def test_yaml_seed_with_data_disks(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(
        "domains: [{name: d, users: [{name: u, password: p}], projects: [{id: "
        + PROJECT
        + ", name: eu-de}]}]\n"
        "servers:\n"
        "  - {id: s1, name: one, project: eu-de, data_disks: 2}\n"
        "  - {id: s2, name: two, project: eu-de, data_disks: [{id: v1, size: 10}]}\n"
        "  - {id: s3, name: three, project: eu-de}\n",
        encoding="utf-8",
    )
    ecs = LocalCloud(load_seed(path)).ecs
    assert [(v.slot, v.size_gb) for v in ecs.servers["s1"].volumes] == [(0, 40), (1, 100), (2, 100)]
    assert [v.id for v in ecs.servers["s2"].data_volumes] == ["v1"]
    assert ecs.servers["s3"].data_volumes == []
    assert ecs.find_volume(PROJECT, "v1") == (ecs.servers["s2"], ecs.servers["s2"].volumes[1])
    assert ecs.find_volume("0" * 32, "v1") is None  # another project


@pytest.mark.parametrize(
    "servers",
    [
        [{"id": ECS_A, "name": "a", "project": "eu-de", "data_disks": -1}],
        [{"id": ECS_A, "name": "a", "project": "eu-de", "data_disks": [{"size": 0}]}],
        [{"id": ECS_A, "name": "a", "project": "eu-de", "data_disks": [{"id": "x", "sizes": 1}]}],
        # A volume attached to two servers, or twice to one.
        [
            {"id": ECS_A, "name": "a", "project": "eu-de", "data_disks": [{"id": "x"}]},
            {"id": ECS_B, "name": "b", "project": "eu-de", "system_volume_id": "x"},
        ],
        [{"id": ECS_A, "name": "a", "project": "eu-de", "data_disks": [{"id": "x"}, {"id": "x"}]}],
    ],
)
def test_bad_data_disk_seeds_are_refused(servers: list[dict[str, Any]]) -> None:
    with pytest.raises(pydantic.ValidationError):
        parse_seed(small_seed(servers=servers))


# ---- IMS: the system-disk image, then the data-disk images of an ECS: two requests ----------------------


async def test_instance_id_with_data_images_is_refused() -> None:
    """The note on data_images: "When you create a data disk image using a data disk, ... You cannot specify
    instance_id." The error-code page has no code of its own for it: IMG.0001 [inference]."""
    async with seeded(disk_seed()) as (cloud, client, auth):
        for body in (COMBINED, {"instance_id": ECS_A, **DATA}, {**COMBINED, "instance_id": ECS_B}):
            r = await client.post("/v2/cloudimages/action", headers=auth, json=body)
            assert r.status_code == 400, r.text
            assert r.json() == {
                "error": {"message": "The request message format is invalid.", "code": "IMG.0001"}
            }
        assert await private_images(client, auth) == []
        assert await quota_used(client, auth) == 0
        assert cloud.ims.jobs == {}
        # An empty data_images is no data-disk image: the plain ECS form.
        await create(client, auth, {**SYSTEM, "data_images": []})


async def test_system_image_then_data_images_of_one_ecs() -> None:
    async with seeded(disk_seed()) as (cloud, client, auth):
        sys_job = await create(client, auth, SYSTEM)
        assert (await job(client, auth, sys_job))["job_type"] == "imsCreateImageByInstance"
        # While the system-disk image is made, the ECS has a task in progress: its data disks wait.
        r = await client.post("/v2/cloudimages/action", headers=auth, json=DATA)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0010")
        assert [i["name"] for i in await private_images(client, auth)] == ["a-sys"]
        cloud.advance(6)
        s = await job(client, auth, sys_job)
        assert s["status"] == "SUCCESS"
        sys_id = s["entities"]["image_id"]

        job_id = await create(client, auth, DATA)
        j = await job(client, auth, job_id)
        assert (j["status"], j["job_type"]) == ("INIT", "imsVolumesToSysDataImagesJob")
        assert j["entities"] == {}
        images = await private_images(client, auth)
        assert sorted(i["name"] for i in images) == ["a-data-1", "a-data-2", "a-sys"]
        assert sorted(i["status"] for i in images) == ["active", "queued", "queued"]
        assert await quota_used(client, auth) == 3
        # The ECS is busy while its data-disk images are made.
        r = await client.post(
            "/v2/cloudimages/action", headers=auth, json={"name": "x", "instance_id": ECS_A}
        )
        assert r.json()["error"]["code"] == "IMG.0010"

        cloud.advance(1)
        j = await job(client, auth, job_id)
        assert j["status"] == "RUNNING"
        assert j["entities"]["process_percent"] == 0.0
        assert [s["status"] for s in j["entities"]["sub_jobs_result"]] == ["RUNNING"] * 2
        assert all(s["entities"] == {} and s["end_time"] is None for s in j["entities"]["sub_jobs_result"])
        assert {i["status"] for i in await private_images(client, auth, virtual_env_type="DataImage")} == {
            "saving"
        }

        cloud.advance(5)
        j = await job(client, auth, job_id)
        assert j["status"] == "SUCCESS"
        assert (j["error_code"], j["fail_reason"]) == (None, None)
        assert j["end_time"] == "2026-03-01T12:00:12.000Z"
        assert set(j["entities"]) == {"sub_jobs_result", "sub_jobs_list"}  # no top-level image_id
        subs = j["entities"]["sub_jobs_result"]
        assert j["entities"]["sub_jobs_list"] == [s["job_id"] for s in subs]
        assert len(set(j["entities"]["sub_jobs_list"])) == 2
        for s in subs:
            assert set(s) == {
                "job_id",
                "job_type",
                "begin_time",
                "end_time",
                "status",
                "error_code",
                "fail_reason",
                "entities",
            }
            assert (s["job_type"], s["status"]) == ("imsCopyVolumeToImageJob", "SUCCESS")
            assert (s["begin_time"], s["end_time"]) == ("2026-03-01T12:00:07.000Z", j["end_time"])
            assert (s["error_code"], s["fail_reason"]) == (None, None)
            assert set(s["entities"]) == {"image_name", "image_id"}
        # The data disks in request order.
        assert [s["entities"]["image_name"] for s in subs] == ["a-data-1", "a-data-2"]
        data1, data2 = [await image(client, auth, s["entities"]["image_id"]) for s in subs]
        sys_img = await image(client, auth, sys_id)

        for img in (sys_img, data1, data2):
            assert (img["status"], img["__imagetype"], img["visibility"]) == ("active", "private", "private")
            assert img["owner"] == PROJECT
        assert sys_img["active_at"] == "2026-03-01T12:00:06Z"
        assert data1["active_at"] == data2["active_at"] == "2026-03-01T12:00:12Z"
        assert sys_img["virtual_env_type"] == "FusionCompute"
        assert sys_img["__data_origin"] == f"instance,{ECS_A}"
        assert sys_img["tags"] == ["role.sys"]
        assert sys_img["min_disk"] == 40
        assert (data1["virtual_env_type"], data2["virtual_env_type"]) == ("DataImage", "DataImage")
        assert data1["__data_origin"] == f"volume,{DISK_A1}"
        assert data2["__data_origin"] == f"volume,{DISK_A2}"
        assert (data1["min_disk"], data2["min_disk"]) == (100, 20)
        assert (data1["tags"], data2["tags"]) == (["disk.one"], ["disk.two"])  # per data image
        assert (data1["__description"], data2["__description"]) == ("first disk", "")
        assert data1["__os_type"] == sys_img["__os_type"] == "Linux"
        assert data1["__originalimagename"] == ""
        # The list tells the two kinds apart.
        data_only = await private_images(client, auth, virtual_env_type="DataImage")
        assert sorted(i["name"] for i in data_only) == ["a-data-1", "a-data-2"]
        assert [i["name"] for i in await private_images(client, auth, virtual_env_type="FusionCompute")] == [
            "a-sys"
        ]
        # The ECS is free again; a data image is deleted like any image and leaves the quota.
        await create(client, auth, {"name": "again", "instance_id": ECS_A})
        assert (await client.delete(f"/v2/images/{data1['id']}", headers=auth)).status_code == 204
        assert await quota_used(client, auth) == 3


async def test_empty_data_images_is_a_plain_system_image() -> None:
    async with seeded(disk_seed()) as (cloud, client, auth):
        job_id = await create(client, auth, {"name": "s", "instance_id": ECS_A, "data_images": []})
        cloud.advance(6)
        j = await job(client, auth, job_id)
        assert j["job_type"] == "imsCreateImageByInstance"
        assert set(j["entities"]) == {"image_id", "image_name"}


async def test_data_disk_images_only() -> None:
    async with seeded(disk_seed()) as (cloud, client, auth):
        body = {
            # The page: with data_images and no instance_id, the data_images values are used.
            "name": "ignored",
            "description": "ignored too",
            "data_images": [
                {"name": "b-data", "volume_id": DISK_B1, "image_tags": [{"key": "k", "value": "v"}]},
            ],
        }
        job_id = await create(client, auth, body)
        [img] = await private_images(client, auth)
        assert (img["name"], img["status"], img["virtual_env_type"]) == ("b-data", "queued", "DataImage")
        assert img["tags"] == ["k.v"]
        assert img["__description"] == ""
        assert img["__data_origin"] == f"volume,{DISK_B1}"
        assert img["min_disk"] == 100  # a seeded count: 100 GB disks
        # The data disk's ECS has a task in progress now.
        r = await client.post(
            "/v2/cloudimages/action", headers=auth, json={"name": "x", "instance_id": ECS_B}
        )
        assert r.json()["error"]["code"] == "IMG.0010"

        cloud.advance(6)
        j = await job(client, auth, job_id)
        assert (j["status"], j["job_type"]) == ("SUCCESS", "imsVolumesToSysDataImagesJob")
        [sub] = j["entities"]["sub_jobs_result"]
        assert sub["entities"] == {"image_name": "b-data", "image_id": img["id"]}
        assert j["entities"]["sub_jobs_list"] == [sub["job_id"]]
        assert (await image(client, auth, img["id"]))["status"] == "active"


async def test_job_progress_path_reports_the_sub_jobs() -> None:
    async with seeded(disk_seed()) as (cloud, client, auth):
        job_id = await create(client, auth, DATA)
        r = await client.get(f"/v1/cloudimages/job/{job_id}", headers=auth)
        assert r.json()["entities"] == {"process_percent": 0.0}
        cloud.advance(3.5)
        running = (await client.get(f"/v1/cloudimages/job/{job_id}", headers=auth)).json()
        assert running["entities"]["process_percent"] == 50.0
        assert len(running["entities"]["sub_jobs_result"]) == 2
        cloud.advance(3)
        done = (await client.get(f"/v1/cloudimages/job/{job_id}", headers=auth)).json()
        assert done["entities"]["process_percent"] == 100.0
        assert (
            done["entities"]["sub_jobs_result"]
            == (await job(client, auth, job_id))["entities"]["sub_jobs_result"]
        )


async def test_job_fail_fault_kills_every_image_of_the_set() -> None:
    async with seeded(disk_seed()) as (cloud, client, auth):
        r = await client.post(
            "/_local/faults",
            json={"kind": "job_fail", "operation": "ims.create_image", "fail_reason": "snapshot failed"},
        )
        assert r.status_code == 201
        job_id = await create(client, auth, DATA)
        cloud.advance(6)
        j = await job(client, auth, job_id)
        assert (j["status"], j["error_code"], j["fail_reason"]) == ("FAIL", "IMG.0014", "snapshot failed")
        subs = j["entities"]["sub_jobs_result"]
        assert [(s["status"], s["error_code"], s["fail_reason"]) for s in subs] == [
            ("FAIL", "IMG.0014", "snapshot failed")
        ] * 2
        for s in subs:
            assert (await image(client, auth, s["entities"]["image_id"]))["status"] == "killed"
        assert cloud.stats()["faults.job_fail"] == 1
        # The ECS is free again.
        await create(client, auth, {"name": "retry", "instance_id": ECS_A})


async def test_job_stuck_fault_keeps_the_set_saving() -> None:
    async with seeded(disk_seed()) as (cloud, client, auth):
        await client.post("/_local/faults", json={"kind": "job_stuck", "operation": "ims.create_image"})
        job_id = await create(client, auth, {"data_images": [{"name": "b", "volume_id": DISK_B1}]})
        cloud.advance(3600)
        j = await job(client, auth, job_id)
        assert j["status"] == "RUNNING"
        assert [s["status"] for s in j["entities"]["sub_jobs_result"]] == ["RUNNING"]
        assert [i["status"] for i in await private_images(client, auth)] == ["saving"]


# ---- refusals ----------------------------------------------------------------------------------------


def member(**fields: Any) -> dict[str, Any]:
    return {"name": "d", "volume_id": DISK_A1, **fields}


SYS_B = stable_uuid("volume", ECS_B)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        # instance_id with data_images, whatever else: "You cannot specify instance_id."
        ({"instance_id": ECS_A, "data_images": [member()]}, "IMG.0001"),
        ({"name": "s", "instance_id": ECS_A, "data_images": [member(volume_id=DISK_B1)]}, "IMG.0001"),
        ({"name": "s", "instance_id": ECS_C, "data_images": [member(volume_id=DISK_C1)]}, "IMG.0001"),
        ({"name": "s", "instance_id": "nope", "data_images": [member(volume_id="nope")]}, "IMG.0001"),
        # Unknown volumes, system disks, another project's disk, a disk named twice.
        ({"data_images": [member(volume_id=DISK_A1[:-1] + "9")]}, "IMG.0120"),
        ({"data_images": [member(volume_id="nope")]}, "IMG.0120"),
        ({"data_images": [member(volume_id=SYS_A)]}, "IMG.0120"),
        ({"data_images": [member(volume_id=SYS_B)]}, "IMG.0120"),
        ({"data_images": [member(volume_id=DISK_NL)]}, "IMG.0120"),
        ({"data_images": [member(), member(name="e")]}, "IMG.0120"),
        # Disks of different ECSs.
        ({"data_images": [member(), member(volume_id=DISK_B1)]}, "IMG.0140"),
        # The members' fields.
        ({"data_images": [{"volume_id": DISK_A1}]}, "IMG.0013"),
        ({"data_images": [member(name="")]}, "IMG.0013"),
        ({"data_images": [member(name="bad/name")]}, "IMG.0003"),
        ({"data_images": [member(name=" lead")]}, "IMG.0003"),
        ({"data_images": [member(name="a" * 129)]}, "IMG.0002"),
        ({"data_images": [{"name": "d"}]}, "IMG.0120"),
        ({"data_images": [member(volume_id="")]}, "IMG.0120"),
        ({"data_images": [member(volume_id=5)]}, "IMG.0001"),
        ({"data_images": [member(description="a<b")]}, "IMG.0054"),
        ({"data_images": [member(description="a" * 1025)]}, "IMG.0004"),
        ({"data_images": [member(tags=["novalue"])]}, "IMG.0115"),
        ({"data_images": [member(tags=["a.1"], image_tags=[{"key": "b", "value": "2"}])]}, "IMG.0115"),
        ({"data_images": [member(tags=[f"k{i}.v" for i in range(11)])]}, "IMG.0116"),
        ({"data_images": [member(image_url="bucket:file.qcow2")]}, "IMG.0001"),
        ({"data_images": [member(min_disk=40)]}, "IMG.0001"),
        ({"data_images": "disk"}, "IMG.0001"),
        ({"data_images": [DISK_A1]}, "IMG.0001"),
        # The top-level fields are still checked in the data-disk-only form.
        ({"name": "bad/name", "data_images": [member()]}, "IMG.0003"),
        # The other forms of the page stay unsupported.
        ({"name": "s", "volume_id": DISK_A1, "os_version": "CentOS 7.0 64bit"}, "IMG.0105"),
        ({"name": "s", "image_url": "b:f.qcow2", "min_disk": 40, "data_images": [member()]}, "IMG.0105"),
        # The data disks' ECS is running.
        ({"data_images": [member(volume_id=DISK_C1)]}, "IMG.0008"),
    ],
)
async def test_refused_forms_create_nothing(body: dict[str, Any], code: str) -> None:
    async with seeded(disk_seed()) as (cloud, client, auth):
        r = await client.post("/v2/cloudimages/action", headers=auth, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == code
        assert r.json()["error"]["message"]
        assert await private_images(client, auth) == []
        assert await quota_used(client, auth) == 0
        assert cloud.ims.jobs == {}


async def test_refusal_messages_of_the_disk_codes() -> None:
    async with seeded(disk_seed()) as (_cloud, client, auth):
        r = await client.post(
            "/v2/cloudimages/action", headers=auth, json={"data_images": [member(volume_id="x")]}
        )
        assert r.json() == {
            "error": {"message": "The specified data disk ID is unavailable.", "code": "IMG.0120"}
        }
        r = await client.post(
            "/v2/cloudimages/action",
            headers=auth,
            json={"data_images": [member(), member(volume_id=DISK_B1)]},
        )
        assert r.json() == {
            "error": {"message": "The disks in the request come from different ECSs.", "code": "IMG.0140"}
        }


# ---- quota -------------------------------------------------------------------------------------------


async def test_quota_counts_every_image_of_the_set() -> None:
    async with seeded(disk_seed(limits={"image_quota": 4})) as (cloud, client, auth):
        await create(client, auth, {"data_images": [{"name": "b", "volume_id": DISK_B1}]})
        assert await quota_used(client, auth) == 1
        await create(client, auth, SYSTEM)
        cloud.advance(6)
        await create(client, auth, DATA)  # two data images: 1 + 1 + 2 = 4, the quota
        assert await quota_used(client, auth) == 4
        cloud.advance(6)
        r = await client.post(
            "/v2/cloudimages/action", headers=auth, json={"name": "x", "instance_id": ECS_B}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0015")
        # Deleting one data image of the set frees one place.
        [data2] = await private_images(client, auth, name="a-data-2")
        assert (await client.delete(f"/v2/images/{data2['id']}", headers=auth)).status_code == 204
        assert await quota_used(client, auth) == 3
        await create(client, auth, {"name": "x", "instance_id": ECS_B})


async def test_a_set_that_does_not_fit_the_quota_is_refused_whole() -> None:
    async with seeded(disk_seed(limits={"image_quota": 2})) as (_cloud, client, auth):
        await create(client, auth, {"data_images": [{"name": "b", "volume_id": DISK_B1}]})
        r = await client.post("/v2/cloudimages/action", headers=auth, json=DATA)  # 1 + 2 > 2
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0015")
        assert await quota_used(client, auth) == 1
        assert [i["name"] for i in await private_images(client, auth)] == ["b"]
        # One data image fewer fits exactly.
        await create(client, auth, {"data_images": DATA["data_images"][:1]})
        assert await quota_used(client, auth) == 2
