"""IAM: tokens (issue, expiry by the clock, verification) and project lookup, over raw HTTP."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from localcloud import LocalCloud, ManualClock

from .conftest import PROJECT, TokenFactory, password_auth

TOKEN_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_password_token_is_201_with_header_and_24h_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/iam/v3/auth/tokens", json=password_auth())
    assert r.status_code == 201
    token = r.headers["X-Subject-Token"]
    assert len(token) > 100
    body = r.json()["token"]
    assert body["methods"] == ["password"]
    assert body["issued_at"] == "2026-03-01T12:00:00.000000Z"
    assert body["expires_at"] == "2026-03-02T12:00:00.000000Z"
    assert TOKEN_TIME.match(body["expires_at"])
    assert body["project"]["id"] == PROJECT
    assert body["project"]["name"] == "eu-de"
    assert body["user"]["name"] == "demo"
    assert body["user"]["domain"]["name"] == "demo"
    assert body["roles"]
    catalog = {entry["type"]: entry for entry in body["catalog"]}
    assert catalog["image"]["endpoints"][0]["url"] == "http://127.0.0.1:8780/ims"
    assert catalog["ecs"]["endpoints"][0]["url"] == f"http://127.0.0.1:8780/ecs/v1/{PROJECT}"
    assert catalog["identity"]["endpoints"][0]["region"] == "eu-de"


async def test_tokens_are_opaque_and_distinct(client: httpx.AsyncClient, get_token: TokenFactory) -> None:
    first, second = await get_token(), await get_token()
    assert first != second


async def test_scope_by_project_id_and_nocatalog(client: httpx.AsyncClient) -> None:
    r = await client.post("/iam/v3/auth/tokens?nocatalog=true", json=password_auth(project={"id": PROJECT}))
    assert r.status_code == 201
    assert "catalog" not in r.json()["token"]
    assert r.json()["token"]["project"]["id"] == PROJECT


async def test_domain_scope_gives_a_domain_token(client: httpx.AsyncClient) -> None:
    body = password_auth()
    body["auth"]["scope"] = {"domain": {"name": "demo"}}
    r = await client.post("/iam/v3/auth/tokens", json=body)
    assert r.status_code == 201
    assert "project" not in r.json()["token"]
    assert r.json()["token"]["domain"]["name"] == "demo"


async def test_wrong_password_is_401_with_iam_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/iam/v3/auth/tokens", json=password_auth(password="nope"))
    assert r.status_code == 401
    assert "X-Subject-Token" not in r.headers
    body = r.json()
    assert body["error"] == {"code": 401, "message": "Incorrect password.", "title": "Unauthorized"}
    assert body["error_code"] == "IAM.0062"


async def test_unknown_user_or_domain_is_401(client: httpx.AsyncClient) -> None:
    unknown: list[dict[str, Any]] = [{"user": "ghost"}, {"domain": "nowhere"}]
    for kwargs in unknown:
        r = await client.post("/iam/v3/auth/tokens", json=password_auth(**kwargs))
        assert r.status_code == 401
        assert r.json()["error_code"] == "IAM.0001"


async def test_unknown_project_scope_is_401(client: httpx.AsyncClient) -> None:
    r = await client.post("/iam/v3/auth/tokens", json=password_auth(project={"name": "eu-nl"}))
    assert r.status_code == 401


async def test_malformed_auth_body_is_400(client: httpx.AsyncClient) -> None:
    json_type = {"Content-Type": "application/json;charset=utf8"}
    r = await client.post("/iam/v3/auth/tokens", content=b"{not json", headers=json_type)
    assert r.status_code == 400
    assert r.json()["error_code"] == "IAM.0011"
    r = await client.post("/iam/v3/auth/tokens", json={"auth": {}})
    assert r.status_code == 400


async def test_token_expires_after_24h_on_the_clock(
    client: httpx.AsyncClient, clock: ManualClock, auth: dict[str, str]
) -> None:
    path = f"/ecs/v1/{PROJECT}/cloudservers/detail"
    assert (await client.get(path, headers=auth)).status_code == 200
    clock.advance(24 * 3600 - 1)
    assert (await client.get(path, headers=auth)).status_code == 200
    clock.advance(1)
    r = await client.get(path, headers=auth)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "Common.0013"
    r = await client.get("/ims/v2/cloudimages", headers=auth)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "IMG.0087"


async def test_head_verifies_tokens(
    client: httpx.AsyncClient, get_token: TokenFactory, clock: ManualClock
) -> None:
    mine, other = await get_token(), await get_token()
    r = await client.head("/iam/v3/auth/tokens", headers={"X-Auth-Token": mine, "X-Subject-Token": other})
    assert r.status_code == 200
    r = await client.head("/iam/v3/auth/tokens", headers={"X-Auth-Token": mine, "X-Subject-Token": "bogus"})
    assert r.status_code == 404
    r = await client.head("/iam/v3/auth/tokens", headers={"X-Auth-Token": "bogus", "X-Subject-Token": mine})
    assert r.status_code == 401
    clock.advance(86400)
    r = await client.head("/iam/v3/auth/tokens", headers={"X-Auth-Token": mine, "X-Subject-Token": mine})
    assert r.status_code == 401


async def test_projects_by_name_needs_a_token(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.get("/iam/v3/projects", params={"name": "eu-de"}, headers=auth)
    assert r.status_code == 200
    projects = r.json()["projects"]
    assert [p["id"] for p in projects] == [PROJECT]
    assert r.json()["links"]["next"] is None
    assert (await client.get("/iam/v3/projects", params={"name": "eu-nl"}, headers=auth)).json()[
        "projects"
    ] == []
    r = await client.get("/iam/v3/projects", params={"name": "eu-de"})
    assert r.status_code == 401
    assert r.json()["error_code"] == "IAM.0001"
    r = await client.get("/iam/v3/projects", headers={"X-Auth-Token": "bogus"})
    assert r.json()["error_code"] == "IAM.0067"


async def test_missing_token_on_ims_and_ecs(client: httpx.AsyncClient) -> None:
    r = await client.get("/ims/v1/cloudimages/quota")
    assert r.status_code == 401
    assert r.json() == {"error": {"message": "The token is incorrect.", "code": "IMG.0087"}}
    r = await client.get(f"/ecs/v1/{PROJECT}/cloudservers/detail")
    assert r.status_code == 401
    assert r.json() == {"error": {"message": "Invalid token.", "code": "Common.0013"}}


async def test_domain_token_cannot_call_ims(client: httpx.AsyncClient, cloud: LocalCloud) -> None:
    body = password_auth()
    body["auth"]["scope"] = {"domain": {"name": "demo"}}
    token = (await client.post("/iam/v3/auth/tokens", json=body)).headers["X-Subject-Token"]
    r = await client.get("/ims/v2/cloudimages", headers={"X-Auth-Token": token})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "IMG.0030"
    r = await client.get(f"/ecs/v1/{PROJECT}/cloudservers/detail", headers={"X-Auth-Token": token})
    assert r.json()["error"]["code"] == "Ecs.0023"


def _without_domain_name(body: dict[str, Any]) -> dict[str, Any]:
    body["auth"]["identity"]["password"]["user"]["domain"] = {}
    return body


def _with_user_id(body: dict[str, Any]) -> dict[str, Any]:
    user = body["auth"]["identity"]["password"]["user"]
    user["id"] = user.pop("name")
    return body


def _with_methods(methods: Any) -> Any:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        body["auth"]["identity"]["methods"] = methods
        return body

    return change


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (_with_user_id, "IAM.0072"),  # the page's user table has name, no id
        (_without_domain_name, "IAM.0072"),
        (_with_methods(["password", "token"]), "IAM.0007"),
        (_with_methods("password"), "IAM.0007"),
        (_with_methods(["token"]), "IAM.0007"),
    ],
)
async def test_token_body_takes_only_the_documented_form(
    client: httpx.AsyncClient, change: Any, code: str
) -> None:
    r = await client.post("/iam/v3/auth/tokens", json=change(password_auth()))
    assert r.status_code == 400
    assert r.json()["error_code"] == code
    assert "X-Subject-Token" not in r.headers


async def test_token_domain_by_id_as_in_the_ecs_dev_guide(
    client: httpx.AsyncClient, cloud: LocalCloud
) -> None:
    body = password_auth()
    domain_id = next(iter(cloud.iam.domains))
    body["auth"]["identity"]["password"]["user"]["domain"] = {"id": domain_id}
    assert (await client.post("/iam/v3/auth/tokens", json=body)).status_code == 201


async def test_token_body_needs_json_content_type(client: httpx.AsyncClient) -> None:
    raw = json.dumps(password_auth()).encode()
    for headers in ({}, {"Content-Type": "text/plain"}):
        r = await client.post("/iam/v3/auth/tokens", content=raw, headers=headers)
        assert r.status_code == 400, headers
        assert r.json()["error_code"] == "IAM.0011"
    for content_type in ("application/json", "application/json;charset=utf8"):
        r = await client.post("/iam/v3/auth/tokens", content=raw, headers={"Content-Type": content_type})
        assert r.status_code == 201, content_type
