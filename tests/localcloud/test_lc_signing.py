"""AK/SK: the SDK-HMAC-SHA256 verifier against the contract's test vector and over raw HTTP."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

import httpx

from localcloud import LocalCloud, ManualClock
from localcloud.clock import fmt_sdk_date
from localcloud.signing import canonical_request, sign, signature, string_to_sign

from .conftest import PROJECT, WEB1, seeded, small_seed

AK, SK = "DEMOAKLOCALCLOUD0001", "demo-secret-key-for-the-local-cloud-only"
HOST = "127.0.0.1:8780"


def test_contract_test_vector() -> None:
    canonical = canonical_request(
        "GET",
        "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
        [("marker", "13551d6b-755d-4757-b956-536f674975c0"), ("limit", "2")],
        {
            "Content-Type": "application/json",
            "Host": "service.region.example.com",
            "X-Sdk-Date": "20191115T033655Z",
        },
        ["content-type", "host", "x-sdk-date"],
        hashlib.sha256(b"").hexdigest(),
    )
    assert canonical.splitlines()[1] == "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/"  # always ends in "/"
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    )
    to_sign = string_to_sign("20191115T033655Z", canonical)
    assert to_sign.startswith("SDK-HMAC-SHA256\n20191115T033655Z\n")
    assert signature("MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", to_sign) == (
        "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    )


def signed(
    cloud: LocalCloud,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: Any = None,
    ak: str = AK,
    sk: str = SK,
    project: str | None = PROJECT,
    skew: float = 0,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``client.request`` with the headers an SDK would sign."""
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"Host": HOST, "Content-Type": "application/json", **(extra or {})}
    if project:
        headers["X-Project-Id"] = project
    when = cloud.clock.now() + timedelta(seconds=skew)
    headers.update(sign(ak, sk, method, path, (params or {}).items(), headers, raw, when))
    return {"method": method, "url": path, "params": params, "content": raw or None, "headers": headers}


async def test_signed_requests_work_on_ims_and_ecs(cloud: LocalCloud, client: httpx.AsyncClient) -> None:
    r = await client.request(
        **signed(cloud, "GET", "/v2/cloudimages", params={"__imagetype": "gold", "limit": "1"})
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 1
    r = await client.request(**signed(cloud, "GET", f"/v1/{PROJECT}/cloudservers/{WEB1}"))
    assert r.status_code == 200, r.text
    r = await client.request(
        **signed(cloud, "POST", "/v2/cloudimages/action", body={"name": "ak", "instance_id": WEB1})
    )
    assert r.status_code == 200, r.text
    assert cloud.stats()["ims.create_image"] == 1


async def test_the_aks_default_project_serves_when_no_project_header(
    cloud: LocalCloud, client: httpx.AsyncClient
) -> None:
    r = await client.request(**signed(cloud, "GET", "/v1/cloudimages/quota", project=None))
    assert r.status_code == 200


async def assert_gateway_401(r: httpx.Response, detail: str) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert set(body) == {"error_msg", "error_code", "request_id"}
    assert body["error_code"] == "APIG.0301"
    assert body["error_msg"].startswith("Incorrect IAM authentication information: ")
    assert detail in body["error_msg"]


async def test_unknown_ak(cloud: LocalCloud, client: httpx.AsyncClient) -> None:
    r = await client.request(**signed(cloud, "GET", "/v2/cloudimages", ak="NOSUCHAK"))
    await assert_gateway_401(r, "not found")


async def test_wrong_sk_or_tampering_is_a_bad_signature(cloud: LocalCloud, client: httpx.AsyncClient) -> None:
    r = await client.request(**signed(cloud, "GET", "/v2/cloudimages", sk="wrong"))
    await assert_gateway_401(r, "verify aksk signature fail")
    kwargs = signed(cloud, "POST", "/v2/cloudimages/action", body={"name": "a", "instance_id": WEB1})
    kwargs["content"] = json.dumps({"name": "b", "instance_id": WEB1}).encode()
    await assert_gateway_401(await client.request(**kwargs), "verify aksk signature fail")
    kwargs = signed(cloud, "GET", "/v2/cloudimages", params={"limit": "1"})
    kwargs["params"] = {"limit": "2"}
    await assert_gateway_401(await client.request(**kwargs), "verify aksk signature fail")
    kwargs = signed(cloud, "GET", "/v2/cloudimages")
    kwargs["headers"]["Authorization"] = "SDK-HMAC-SHA256 garbage"
    await assert_gateway_401(await client.request(**kwargs), "verify aksk signature fail")


async def test_sdk_date_more_than_15_minutes_off_is_refused(
    cloud: LocalCloud, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    for skew in (-15 * 60, 15 * 60):
        assert (await client.request(**signed(cloud, "GET", "/v2/cloudimages", skew=skew))).status_code == 200
    for skew in (-15 * 60 - 1, 15 * 60 + 1):
        r = await client.request(**signed(cloud, "GET", "/v2/cloudimages", skew=skew))
        await assert_gateway_401(
            r, f"signature expired, signature time:{fmt_sdk_date(clock.now() + timedelta(seconds=skew))}"
        )
    # A request signed now and replayed 16 minutes later.
    kwargs = signed(cloud, "GET", "/v2/cloudimages")
    clock.advance(16 * 60)
    await assert_gateway_401(await client.request(**kwargs), "signature expired")


async def test_project_header_of_another_account_is_refused(
    cloud: LocalCloud, client: httpx.AsyncClient
) -> None:
    r = await client.request(**signed(cloud, "GET", "/v2/cloudimages", project="f" * 32))
    assert r.status_code == 401
    r = await client.request(**signed(cloud, "GET", f"/v1/{'f' * 32}/cloudservers/detail", project=PROJECT))
    assert r.json()["error"]["code"] == "Ecs.0023"


async def test_temporary_keys_need_the_security_token() -> None:
    data = small_seed()
    data["domains"][0]["access_keys"] = [
        {"ak": "TEMPAK", "sk": "tempsk", "project": "eu-de", "security_token": "st-1"}
    ]
    async with seeded(data) as (cloud, client, _auth):
        r = await client.request(**signed(cloud, "GET", "/v2/cloudimages", ak="TEMPAK", sk="tempsk"))
        await assert_gateway_401(r, "security token")
        kwargs = signed(
            cloud, "GET", "/v2/cloudimages", ak="TEMPAK", sk="tempsk", extra={"X-Security-Token": "st-1"}
        )
        assert (await client.request(**kwargs)).status_code == 200


async def test_unsigned_payload_marker(cloud: LocalCloud, client: httpx.AsyncClient) -> None:
    headers = {
        "Host": HOST,
        "Content-Type": "application/octet-stream",
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": fmt_sdk_date(cloud.clock.now()),
        "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD",
    }
    names = sorted(k.lower() for k in headers)
    canonical = canonical_request("GET", "/v1/cloudimages/quota", [], headers, names, "UNSIGNED-PAYLOAD")
    sig = signature(SK, string_to_sign(headers["X-Sdk-Date"], canonical))
    headers["Authorization"] = (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    assert (await client.get("/v1/cloudimages/quota", headers=headers)).status_code == 200
