"""Fault rules: every kind, the firing conditions, seeds and the /_local/faults endpoints."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from localcloud import ConnectionDropped, LocalCloud, ManualClock
from localcloud.server import start_in_thread

from .conftest import DB1, PROJECT, WEB1, password_auth, seeded, small_seed

CREATE = {"name": "img", "instance_id": WEB1}


async def add_fault(client: httpx.AsyncClient, **rule: Any) -> dict[str, Any]:
    r = await client.post("/_local/faults", json=rule)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()["faults"][0]
    return created


async def test_server_error_with_configurable_status(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await add_fault(client, kind="server_error", operation="ims.list_images", status=503, first=1)
    r = await client.get("/v2/cloudimages", headers=auth)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "IMG.0061"
    assert (await client.get("/v2/cloudimages", headers=auth)).status_code == 200
    assert cloud.stats()["faults.server_error"] == 1
    assert cloud.stats()["ims.list_images"] == 2


async def test_throttle_429_has_retry_after_in_each_service_shape(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await add_fault(client, kind="throttle_429", path="*/cloudservers/*", retry_after=3)
    r = await client.get(f"/v1/{PROJECT}/cloudservers/{WEB1}", headers=auth)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "3"
    assert r.json()["error"]["code"] == "Common.1503"
    await add_fault(client, kind="throttle_429", operation="iam.create_token")
    r = await client.post("/v3/auth/tokens", json=password_auth())
    assert r.status_code == 429
    assert r.json()["error_code"] == "IAM.0012"
    assert r.headers["Retry-After"] == "1"


async def test_ims_flow_control(client: httpx.AsyncClient, auth: dict[str, str], cloud: LocalCloud) -> None:
    await add_fault(client, kind="ims_flow_control", operation="ims.create_image", nth=2)
    assert (await client.post("/v2/cloudimages/action", headers=auth, json=CREATE)).status_code == 200
    r = await client.post("/v2/cloudimages/action", headers=auth, json={**CREATE, "instance_id": DB1})
    assert r.status_code == 400
    assert r.json() == {
        "error": {"message": "The number of tasks exceeds the flow control limit.", "code": "IMG.0060"}
    }
    assert cloud.stats()["faults.ims_flow_control"] == 1


async def test_apig_throttle_has_the_gateway_body(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await add_fault(client, kind="apig_throttle", method="GET", path="/v2/*", retry_after=2)
    r = await client.get("/v2/cloudimages", headers=auth)
    assert r.status_code == 429
    body = r.json()
    assert set(body) == {"error_msg", "error_code", "request_id"}
    assert body["error_code"] == "APIG.0308"
    assert "throttling threshold" in body["error_msg"]
    assert r.headers["Retry-After"] == "2"


async def test_ecs_flow_limit_is_202_and_not_applied(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await add_fault(client, kind="ecs_flow_limit", operation="ecs.stop_servers")
    r = await client.post(
        f"/v1/{PROJECT}/cloudservers/action", headers=auth, json={"os-stop": {"servers": [{"id": DB1}]}}
    )
    assert r.status_code == 202
    assert r.json()["error"] == {"message": "Flow limit exceeded.", "code": "Common.0024"}
    assert cloud.ecs.servers[DB1].task_state is None
    assert cloud.ecs.jobs == {}


async def test_connection_reset_over_asgi(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await add_fault(client, kind="connection_reset", operation="ims.create_image", first=1)
    with pytest.raises(ConnectionDropped):
        await client.post("/v2/cloudimages/action", headers=auth, json=CREATE)
    assert cloud.ims.images.keys() == {
        "9a0b1c2d-0000-4000-8000-0000000000a1",
        "9a0b1c2d-0000-4000-8000-0000000000a2",
    }
    assert isinstance(ConnectionDropped(), httpx.RemoteProtocolError)  # the family a client already handles
    assert (await client.post("/v2/cloudimages/action", headers=auth, json=CREATE)).status_code == 200


def test_connection_reset_under_uvicorn_drops_the_socket() -> None:
    cloud = LocalCloud(clock=ManualClock())
    handle = start_in_thread(cloud, host="127.0.0.1", port=0)
    try:
        with httpx.Client(base_url=handle.url, timeout=5) as c:
            c.post(
                "/_local/faults",
                json={"kind": "connection_reset", "operation": "iam.create_token", "first": 1},
            )
            with pytest.raises(httpx.RemoteProtocolError):
                c.post("/v3/auth/tokens", json=password_auth())
            assert c.post("/v3/auth/tokens", json=password_auth()).status_code == 201
            assert c.get("/_local/stats").json()["faults.connection_reset"] == 1
    finally:
        handle.stop()


async def test_delay_waits_on_the_clock(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    before = clock.now()
    await add_fault(client, kind="delay", operation="ims.show_quota", seconds=30)
    assert (await client.get("/v1/cloudimages/quota", headers=auth)).status_code == 200
    assert (clock.now() - before).total_seconds() == 30


async def test_commit_then_fail_applies_then_loses_the_answer(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await add_fault(client, kind="commit_then_fail", operation="ims.create_image", status=502, first=1)
    r = await client.post("/v2/cloudimages/action", headers=auth, json=CREATE)
    assert r.status_code == 502
    # The image job was created all the same: a retry now meets the running job.
    assert len(cloud.ims.jobs) == 1
    r = await client.post("/v2/cloudimages/action", headers=auth, json=CREATE)
    assert r.json()["error"]["code"] == "IMG.0010"


async def test_commit_then_fail_by_reset(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await add_fault(client, kind="commit_then_fail", operation="ecs.start_servers", mode="reset")
    with pytest.raises(ConnectionDropped):
        await client.post(
            f"/v1/{PROJECT}/cloudservers/action", headers=auth, json={"os-start": {"servers": [{"id": WEB1}]}}
        )
    assert cloud.ecs.servers[WEB1].task_state == "powering-on"


async def test_job_fail_on_a_power_action(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await add_fault(
        client, kind="job_fail", operation="ecs.stop_servers", error_code="Ecs.0100", fail_reason="no"
    )
    r = await client.post(
        f"/v1/{PROJECT}/cloudservers/action", headers=auth, json={"os-stop": {"servers": [{"id": DB1}]}}
    )
    cloud.advance(5)
    job = (await client.get(f"/v1/{PROJECT}/jobs/{r.json()['job_id']}", headers=auth)).json()
    assert (job["status"], job["error_code"], job["fail_reason"]) == ("FAIL", "Ecs.0100", "no")
    assert cloud.ecs.servers[DB1].status == "ACTIVE"


async def test_job_stuck_stays_running(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await add_fault(client, kind="job_stuck", operation="ims.create_image")
    job_id = (await client.post("/v2/cloudimages/action", headers=auth, json=CREATE)).json()["job_id"]
    cloud.advance(10 * 24 * 3600)
    auth = {
        "X-Auth-Token": (await client.post("/v3/auth/tokens", json=password_auth())).headers[
            "X-Subject-Token"
        ]
    }
    job = (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).json()
    assert job["status"] == "RUNNING"
    assert job["end_time"] is None
    [image] = [i for i in cloud.ims.images.values() if i.name == "img"]
    assert image.status == "saving"


async def test_token_revoked(cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await add_fault(client, kind="token_revoked", operation="ims.list_images", first=1)
    r = await client.get("/v2/cloudimages", headers=auth)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "IMG.0087"
    r = await client.get(f"/v1/{PROJECT}/cloudservers/detail", headers=auth)  # and after
    assert r.status_code == 401
    assert cloud.stats()["faults.token_revoked"] == 1


async def test_firing_conditions_first_nth_times_and_probability(
    cloud: LocalCloud, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    async def statuses(n: int) -> list[int]:
        return [(await client.get("/v1/cloudimages/quota", headers=auth)).status_code for _ in range(n)]

    rule = await add_fault(client, kind="server_error", operation="ims.show_quota", first=2)
    assert await statuses(4) == [500, 500, 200, 200]
    await client.delete(f"/_local/faults/{rule['id']}")
    rule = await add_fault(client, kind="server_error", operation="ims.show_quota", nth=3)
    assert await statuses(4) == [200, 200, 500, 200]
    await client.delete("/_local/faults")
    await add_fault(client, kind="server_error", operation="ims.show_quota", times=1)
    assert await statuses(3) == [500, 200, 200]
    await client.delete("/_local/faults")
    await add_fault(client, kind="server_error", operation="ims.show_quota", probability=0.5)
    first = await statuses(40)
    assert 5 < first.count(500) < 35
    # The RNG is seeded: after a reset the same sequence comes back.
    cloud.reset()
    auth["X-Auth-Token"] = (await client.post("/v3/auth/tokens", json=password_auth())).headers[
        "X-Subject-Token"
    ]
    await add_fault(client, kind="server_error", operation="ims.show_quota", probability=0.5)
    assert await statuses(40) == first


async def test_faults_endpoints(client: httpx.AsyncClient) -> None:
    rule = await add_fault(client, id="r1", kind="delay", operation="ims.show_job", seconds=1)
    assert rule["id"] == "r1"
    listed = (await client.get("/_local/faults")).json()["faults"]
    assert [r["id"] for r in listed] == ["r1"]
    assert (
        await client.post("/_local/faults", json={"kind": "explode", "operation": "x"})
    ).status_code == 400
    assert (await client.post("/_local/faults", json={"kind": "delay"})).status_code == 400  # matches nothing
    assert (await client.delete("/_local/faults/r1")).status_code == 204
    assert (await client.delete("/_local/faults/r1")).status_code == 404
    r = await client.post(
        "/_local/faults", json=[{"kind": "delay", "operation": "a"}, {"kind": "delay", "operation": "b"}]
    )
    assert len(r.json()["faults"]) == 2


async def test_faults_from_the_seed() -> None:
    data = small_seed(
        servers=[{"id": WEB1, "name": "web-1", "project": "eu-de", "status": "SHUTOFF"}],
        faults=[{"kind": "job_fail", "operation": "ims.create_image", "error_code": "IMG.0014"}],
    )
    async with seeded(data) as (cloud, client, auth):
        job_id = (await client.post("/v2/cloudimages/action", headers=auth, json=CREATE)).json()["job_id"]
        cloud.advance(60)
        job = (await client.get(f"/v1/{PROJECT}/jobs/{job_id}", headers=auth)).json()
        assert (job["status"], job["error_code"]) == ("FAIL", "IMG.0014")
        assert job["fail_reason"] == "An exception occurred when IaaS OpenStack was executing the task."
        assert cloud.stats()["faults.job_fail"] == 1
