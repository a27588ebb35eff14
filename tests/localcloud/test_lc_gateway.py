"""What every answer shares: X-Request-Id, APIG.0101 for unrouted requests, never a FastAPI body."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from localcloud import LocalCloud

from .conftest import DB1, PROJECT, WEB1

HEX32 = re.compile(r"^[0-9a-f]{32}$")
APIG_0101 = "The API does not exist or has not been published in the environment."


def no_detail(r: httpx.Response) -> None:
    """FastAPI's {"detail": ...} must never reach a client."""
    if r.content:
        body: Any = r.json()
        assert not (isinstance(body, dict) and "detail" in body), r.text


async def test_request_id_on_success_error_and_local_routes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    answers = [
        await client.get("/v2/cloudimages", headers=auth),  # 200
        await client.get(f"/v1/{PROJECT}/cloudservers/{WEB1}", headers=auth),  # 200
        await client.get("/v2/images/00000000-0000-4000-8000-00000000dead", headers=auth),  # 404
        await client.get("/ims/v1/cloudimages/quota"),  # 401
        await client.post("/iam/v3/auth/tokens", json={}),  # 400
        await client.head("/iam/v3/auth/tokens", headers={"X-Auth-Token": "x"}),  # 401, no body
        await client.get("/nowhere"),  # 404 APIG.0101
        await client.get("/_local/stats"),
        await client.delete("/_local/faults"),  # 204
    ]
    ids = [r.headers.get("X-Request-Id") for r in answers]
    for r, rid in zip(answers, ids, strict=True):
        assert rid is not None, (r.request.url, r.status_code)
        assert HEX32.match(rid), rid
        assert r.headers.get_list("X-Request-Id") == [rid]  # exactly one
    assert len(set(ids)) == len(ids)  # fresh per request


async def test_unknown_path_is_apig_0101(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for path in (
        "/nowhere",
        "/v2/cloudimage",
        "/ims/v2/cloudimages/",  # no redirect to the path without the slash
        "/v2/cloudimages/",
        f"/ims/v1/{PROJECT}/jobs/",
        "/v1/cloudimages/job/",
        "/ecs/v2.1/servers",
        "/",
    ):
        r = await client.get(path, headers=auth)
        assert r.status_code == 404, path
        body = r.json()
        assert body == {"error_msg": APIG_0101, "error_code": "APIG.0101", "request_id": body["request_id"]}
        assert body["request_id"] == r.headers["X-Request-Id"], path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/cloudimages"),
        ("PUT", "/ims/v2/images/{image}"),
        ("PATCH", "/v2/images/{image}"),
        ("GET", "/v2/cloudimages/action"),
        ("DELETE", f"/v1/{PROJECT}/cloudservers/{DB1}"),
        ("GET", "/iam/v3/auth/tokens"),
        ("DELETE", f"/v1/{PROJECT}/jobs/{'0' * 32}"),
        ("POST", "/v1/cloudimages/quota"),
        ("OPTIONS", "/v2/cloudimages"),
        ("HEAD", "/v2/cloudimages"),
    ],
)
async def test_wrong_method_is_apig_0101(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, path: str
) -> None:
    path = path.replace("{image}", "9a0b1c2d-0000-4000-8000-0000000000a1")
    r = await client.request(method, path, headers=auth)
    assert r.status_code == 404
    assert "Allow" not in r.headers
    if method == "HEAD":
        assert r.content == b""
    else:
        assert r.json() == {
            "error_msg": APIG_0101,
            "error_code": "APIG.0101",
            "request_id": r.headers["X-Request-Id"],
        }


async def test_gateway_bodies_carry_the_header_request_id(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # APIG.0308 (throttling, a fault rule) and APIG.0301 (a bad AK/SK signature).
    r = await client.post("/_local/faults", json={"kind": "apig_throttle", "method": "GET", "path": "/v2/*"})
    assert r.status_code == 201
    r = await client.get("/v2/cloudimages", headers=auth)
    assert r.status_code == 429
    assert r.json()["request_id"] == r.headers["X-Request-Id"]
    r = await client.get(
        "/v1/cloudimages/quota",
        headers={
            "Authorization": "SDK-HMAC-SHA256 Access=NOPE, SignedHeaders=x-sdk-date, Signature=00",
            "X-Sdk-Date": "20260301T120000Z",
        },
    )
    assert r.json()["error_code"].startswith("APIG.")
    assert r.json()["request_id"] == r.headers["X-Request-Id"]


async def test_validation_errors_answer_in_the_service_shape(cloud: LocalCloud) -> None:
    """A route with a typed parameter that fails FastAPI's validation: 400 in the service's shape."""
    api = cloud.app.app  # type: ignore[attr-defined]

    async def typed(n: int) -> dict[str, int]:
        return {"n": n}

    api.add_api_route("/ims/v9/probe/{n}", typed, methods=["GET"])
    api.add_api_route("/ecs/v9/probe/{n}", typed, methods=["GET"])
    api.add_api_route("/iam/v9/probe/{n}", typed, methods=["GET"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cloud.app), base_url="http://127.0.0.1"
    ) as c:
        assert (await c.get("/ims/v9/probe/1")).json() == {"n": 1}
        r = await c.get("/ims/v9/probe/x")
        assert (r.status_code, r.json()["error"]["code"]) == (400, "IMG.0001")
        r = await c.get("/ecs/v9/probe/x")
        assert (r.status_code, r.json()["error"]["code"]) == (400, "Ecs.0005")
        r = await c.get("/iam/v9/probe/x")
        assert (r.status_code, r.json()["error_code"]) == (400, "IAM.0011")
        no_detail(r)


async def test_no_answer_has_a_detail_key(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    image = "9a0b1c2d-0000-4000-8000-0000000000a1"
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/v2/cloudimages?limit=x", None),
        ("GET", "/v2/cloudimages?tag=a.b", None),
        ("GET", f"/v2/images/{image}/", None),
        ("POST", "/v2/cloudimages/action", None),
        ("POST", "/v2/cloudimages/action", {"nope": 1}),
        ("POST", f"/v1/cloudimages/{image}/file", {}),
        ("GET", f"/v1/{PROJECT}/cloudservers/detail?offset=x", None),
        ("POST", f"/v1/{PROJECT}/cloudservers/action", {"os-stop": 1}),
        ("GET", f"/v1/{PROJECT}/jobs/x", None),
        ("GET", "/v1/cloudimages/job/x", None),
        ("GET", "/v3/projects?page=x", None),
        ("PUT", "/v3/projects", None),
        ("GET", "/docs", None),
        ("GET", "/openapi.json", None),
        ("TRACE", "/v2/cloudimages", None),
    ]
    for method, path, body in requests:
        r = await client.request(method, path, headers=auth, json=body)
        assert r.status_code >= 400, (method, path)
        assert HEX32.match(r.headers["X-Request-Id"])
        no_detail(r)
