"""ECS: server details, list filters and paging, stop/start lifecycles on the clock, jobs."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from localcloud import LocalCloud, ManualClock

from .conftest import DB1, PROJECT, WEB1, seeded, small_seed

SERVER_FIELDS = {
    "id",
    "name",
    "status",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:power_state",
    "locked",
    "created",
    "updated",
    "tenant_id",
    "tags",
    "metadata",
    "image",
    "flavor",
    "addresses",
    "os-extended-volumes:volumes_attached",
}
JOB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def state(server: dict[str, Any]) -> tuple[str, str, str | None, int]:
    return (
        server["status"],
        server["OS-EXT-STS:vm_state"],
        server["OS-EXT-STS:task_state"],
        server["OS-EXT-STS:power_state"],
    )


async def get_server(client: httpx.AsyncClient, auth: dict[str, str], server_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/{PROJECT}/cloudservers/{server_id}", headers=auth)
    assert r.status_code == 200, r.text
    server: dict[str, Any] = r.json()["server"]
    return server


async def action(client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]) -> str:
    r = await client.post(f"/v1/{PROJECT}/cloudservers/action", headers=auth, json=body)
    assert r.status_code == 200, r.text
    job_id: str = r.json()["job_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    return job_id


async def test_server_details_have_the_documented_fields(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    server = await get_server(client, auth, WEB1)
    assert set(server) >= SERVER_FIELDS
    assert server["name"] == "web-1"
    assert server["tenant_id"] == PROJECT
    assert state(server) == ("SHUTOFF", "stopped", None, 4)
    assert server["tags"] == ["env=prod", "backup=nightly"]
    assert server["created"] == "2026-03-01T12:00:00Z"
    assert server["os-extended-volumes:volumes_attached"][0]["device"] == "/dev/vda"
    assert state(await get_server(client, auth, DB1)) == ("ACTIVE", "active", None, 1)


async def test_prefixed_and_bare_paths_answer_alike(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    bare = await client.get(f"/v1/{PROJECT}/cloudservers/{WEB1}", headers=auth)
    prefixed = await client.get(f"/ecs/v1/{PROJECT}/cloudservers/{WEB1}", headers=auth)
    assert bare.json() == prefixed.json()


async def test_unknown_server_is_404_ecs_0114(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.get(f"/v1/{PROJECT}/cloudservers/6f1c2d7e-0000-4000-8000-0000000000ff", headers=auth)
    assert r.status_code == 404
    assert r.json()["error"] == {"message": "The ECS does not exist.", "code": "Ecs.0114"}


async def test_project_in_url_must_be_the_tokens(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.get(f"/v1/{'f' * 32}/cloudservers/{WEB1}", headers=auth)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "Ecs.0023"


async def list_names(client: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> tuple[int, list[str]]:
    r = await client.get(f"/v1/{PROJECT}/cloudservers/detail", headers=auth, params=params)
    assert r.status_code == 200, r.text
    return r.json()["count"], [s["name"] for s in r.json()["servers"]]


async def test_list_filters(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert await list_names(client, auth) == (5, ["web-1", "db-1", "web-2", "worker-1", "build-1"])
    assert await list_names(client, auth, name="web") == (2, ["web-1", "web-2"])
    assert await list_names(client, auth, name="w.b-") == (2, ["web-1", "web-2"])  # "." is any character
    assert await list_names(client, auth, status="SHUTOFF") == (2, ["web-1", "build-1"])
    assert await list_names(client, auth, tags="backup=nightly") == (3, ["web-1", "db-1", "web-2"])
    assert await list_names(client, auth, **{"not-tags": "env=prod"}) == (2, ["worker-1", "build-1"])
    assert await list_names(client, auth, tags="env=prod", status="ACTIVE") == (2, ["db-1", "web-2"])


async def test_list_paging_offset_is_a_page_number(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert await list_names(client, auth, limit=2) == (5, ["web-1", "db-1"])
    assert await list_names(client, auth, limit=2, offset=1) == (5, ["web-1", "db-1"])
    assert await list_names(client, auth, limit=2, offset=0) == (5, ["web-1", "db-1"])
    assert await list_names(client, auth, limit=2, offset=2) == (5, ["web-2", "worker-1"])
    assert await list_names(client, auth, limit=2, offset=3) == (5, ["build-1"])
    assert await list_names(client, auth, limit=2, offset=4) == (5, [])


async def test_list_default_limit_is_25_and_max_1000() -> None:
    servers = [
        {"id": f"00000000-0000-4000-8000-{i:012d}", "name": f"s{i}", "project": "eu-de"} for i in range(1100)
    ]
    async with seeded(small_seed(servers=servers)) as (_cloud, c, auth):
        body = (await c.get(f"/v1/{PROJECT}/cloudservers/detail", headers=auth)).json()
        assert (body["count"], len(body["servers"])) == (1100, 25)
        body = (await c.get(f"/v1/{PROJECT}/cloudservers/detail?limit=5000", headers=auth)).json()
        assert len(body["servers"]) == 1000


async def ecs_job(client: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    r = await client.get(f"/ecs/v1/{PROJECT}/jobs/{job_id}", headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_stop_lifecycle_step_by_step(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    job_id = await action(client, auth, {"os-stop": {"type": "SOFT", "servers": [{"id": DB1}]}})
    assert state(await get_server(client, auth, DB1)) == ("ACTIVE", "active", "powering-off", 1)
    job = await ecs_job(client, auth, job_id)
    assert job["status"] == "RUNNING"
    assert job["end_time"] is None
    assert JOB_TIME.match(job["begin_time"])
    assert job["entities"]["sub_jobs_total"] == 1
    assert job["entities"]["sub_jobs"][0]["entities"] == {"server_id": DB1}

    clock.advance(1.9)
    assert state(await get_server(client, auth, DB1)) == ("ACTIVE", "active", "powering-off", 1)
    clock.advance(0.1)
    server = await get_server(client, auth, DB1)
    assert state(server) == ("SHUTOFF", "stopped", None, 4)
    assert server["updated"] == "2026-03-01T12:00:02Z"
    job = await ecs_job(client, auth, job_id)
    assert job["status"] == "SUCCESS"
    assert job["end_time"] == "2026-03-01T12:00:02.000Z"
    assert job["error_code"] is None
    assert job["entities"]["sub_jobs"][0]["status"] == "SUCCESS"


async def test_start_is_the_reverse(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    job_id = await action(client, auth, {"os-start": {"servers": [{"id": WEB1}]}})
    assert state(await get_server(client, auth, WEB1)) == ("SHUTOFF", "stopped", "powering-on", 4)
    clock.advance(2)
    assert state(await get_server(client, auth, WEB1)) == ("ACTIVE", "active", None, 1)
    assert (await ecs_job(client, auth, job_id))["status"] == "SUCCESS"


async def test_batch_stop_of_several_servers(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    servers = [{"id": DB1}, {"id": "6f1c2d7e-0000-4000-8000-000000000003"}]
    job_id = await action(client, auth, {"os-stop": {"type": "HARD", "servers": servers}})
    clock.advance(2)
    job = await ecs_job(client, auth, job_id)
    assert job["status"] == "SUCCESS"
    assert job["entities"]["sub_jobs_total"] == 2
    assert await list_names(client, auth, status="ACTIVE") == (1, ["worker-1"])


async def test_stop_of_a_stopped_server_succeeds_at_once(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job_id = await action(client, auth, {"os-stop": {"servers": [{"id": WEB1}]}})
    assert (await ecs_job(client, auth, job_id))["status"] == "SUCCESS"
    assert state(await get_server(client, auth, WEB1)) == ("SHUTOFF", "stopped", None, 4)


async def test_power_action_during_a_transition_fails_in_the_job(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await action(client, auth, {"os-stop": {"servers": [{"id": DB1}]}})
    job_id = await action(client, auth, {"os-start": {"servers": [{"id": DB1}]}})
    job = await ecs_job(client, auth, job_id)
    assert job["status"] == "FAIL"
    assert job["error_code"] == "Ecs.0100"
    assert job["entities"]["sub_jobs"][0]["status"] == "FAIL"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "Common.0002"),
        ({"os-reboot": {"servers": [{"id": DB1}]}}, 400, "Ecs.0005"),
        ({"os-stop": {"servers": []}}, 400, "Ecs.0005"),
        ({"os-stop": {"type": "GENTLE", "servers": [{"id": DB1}]}}, 400, "Ecs.0005"),
        ({"os-stop": {"servers": [{"id": "6f1c2d7e-0000-4000-8000-0000000000ff"}]}}, 404, "Ecs.0114"),
        # Undocumented spellings and combinations (the pages' request tables).
        ({"os-stop": {"servers": [{"id": DB1}]}, "os-start": {"servers": [{"id": WEB1}]}}, 400, "Ecs.0005"),
        ({"os-stop": {"Type": "HARD", "servers": [{"id": DB1}]}}, 400, "Ecs.0005"),
        ({"os-start": {"type": "SOFT", "servers": [{"id": WEB1}]}}, 400, "Ecs.0005"),
        ({"os-stop": {"servers": [{"server_id": DB1}]}}, 400, "Ecs.0005"),
        ({"os-stop": {"servers": [{"id": DB1, "name": "db-1"}]}}, 400, "Ecs.0005"),
    ],
)
async def test_bad_actions(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any], status: int, code: str
) -> None:
    r = await client.post(f"/v1/{PROJECT}/cloudservers/action", headers=auth, json=body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


async def test_unknown_job_is_common_0011(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.get(f"/ecs/v1/{PROJECT}/jobs/{'0' * 32}", headers=auth)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "Common.0011"
    assert body["error"]["message"] == "Failed to query system tasks."


async def test_job_ids_are_per_service(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    ecs_job_id = await action(client, auth, {"os-start": {"servers": [{"id": WEB1}]}})
    r = await client.get(f"/ims/v1/{PROJECT}/jobs/{ecs_job_id}", headers=auth)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "IMG.0023"
    r = await client.post(
        "/ims/v2/cloudimages/action",
        headers=auth,
        json={"name": "x", "instance_id": "6f1c2d7e-0000-4000-8000-000000000005"},
    )
    ims_job_id = r.json()["job_id"]
    r = await client.get(f"/ecs/v1/{PROJECT}/jobs/{ims_job_id}", headers=auth)
    assert r.json()["code"] == "Common.0011"
    # On the bare, shared path the id tells whose job it is.
    assert (await client.get(f"/v1/{PROJECT}/jobs/{ims_job_id}", headers=auth)).json()["job_type"] == (
        "imsCreateImageByInstance"
    )
    assert (await client.get(f"/v1/{PROJECT}/jobs/{ecs_job_id}", headers=auth)).json()["entities"][
        "sub_jobs_total"
    ] == 1


async def test_server_state_is_visible_on_the_python_objects(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await action(client, auth, {"os-stop": {"servers": [{"id": DB1}]}})
    assert cloud.ecs.servers[DB1].task_state == "powering-off"
    clock.advance(5)
    assert cloud.ecs.servers[DB1].status == "SHUTOFF"


async def test_list_tags_is_one_tag_string(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    # A comma is not a separator: "env=prod,backup=nightly" is one tag string, and no server has it.
    assert await list_names(client, auth, tags="env=prod,backup=nightly") == (0, [])
    assert await list_names(client, auth, tags="env=prod") == (3, ["web-1", "db-1", "web-2"])
    # Equality, not containment: a key alone or a prefix matches nothing.
    assert await list_names(client, auth, tags="env") == (0, [])
    assert await list_names(client, auth, tags="env=pro") == (0, [])
    # not-tags alike: the comma value excludes nothing.
    assert (await list_names(client, auth, **{"not-tags": "env=prod,env=dev"}))[0] == 5
    assert await list_names(client, auth, **{"not-tags": "env=dev"}) == (
        4,
        ["web-1", "db-1", "web-2", "worker-1"],
    )


async def test_unknown_job_on_each_host(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    unknown = "f" * 32
    r = await client.get(f"/ecs/v1/{PROJECT}/jobs/{unknown}", headers=auth)
    assert r.status_code == 400
    assert (r.json()["code"], r.json()["error"]["code"]) == ("Common.0011", "Common.0011")
    r = await client.get(f"/ims/v1/{PROJECT}/jobs/{unknown}", headers=auth)
    assert (r.status_code, r.json()) == (
        400,
        {"error": {"message": "An exception occurred during task query.", "code": "IMG.0023"}},
    )
    # The bare shared path: an id known to neither answers as ECS does ([inference]).
    r = await client.get(f"/v1/{PROJECT}/jobs/{unknown}", headers=auth)
    assert (r.status_code, r.json()["code"]) == (400, "Common.0011")


async def test_list_refuses_undocumented_query_parameters(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for params in ({"not_tags": "env=prod"}, {"tag": "env=prod"}, {"status": "STOPPED"}, {"Name": "web"}):
        r = await client.get(f"/v1/{PROJECT}/cloudservers/detail", headers=auth, params=params)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "Ecs.0005"), params


async def test_list_by_reservation_id(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    reservation = (await get_server(client, auth, DB1))["OS-EXT-SRV-ATTR:reservation_id"]
    assert await list_names(client, auth, reservation_id=reservation) == (1, ["db-1"])
    assert await list_names(client, auth, reservation_id="r-00000000") == (0, [])
