"""Auth flows: token refresh once on 401, and the SDK-HMAC-SHA256 signer against the test vector."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from imsflow.auth import AkSkAuth, TokenAuth, canonical_request, string_to_sign
from imsflow.models import IamToken

from .conftest import make_token

# Contract section 2.3 (Huawei signing guide, recomputed).
AK = "QTWAOYTTINDUT2QVKYUC"
SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
VECTOR_URL = (
    "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
    "?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0"
)
VECTOR_TIME = datetime(2019, 11, 15, 3, 36, 55, tzinfo=UTC)


def vector_request() -> httpx.Request:
    return httpx.Request("GET", VECTOR_URL, headers={"Content-Type": "application/json"})


def test_signature_matches_the_test_vector() -> None:
    request = vector_request()
    AkSkAuth(AK, SecretStr(SK), clock=lambda: VECTOR_TIME).sign(request)
    assert request.headers["X-Sdk-Date"] == "20191115T033655Z"
    assert request.headers["Authorization"] == (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;x-sdk-date, "
        "Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    )


def test_canonical_request_of_the_test_vector() -> None:
    request = vector_request()
    request.headers["X-Sdk-Date"] = "20191115T033655Z"
    canonical = canonical_request(request, ["content-type", "host", "x-sdk-date"])
    assert canonical == (
        "GET\n"
        "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\n"
        "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n"
        "content-type:application/json\n"
        "host:service.region.example.com\n"
        "x-sdk-date:20191115T033655Z\n"
        "\n"
        "content-type;host;x-sdk-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    )
    assert string_to_sign(canonical, "20191115T033655Z").startswith(
        "SDK-HMAC-SHA256\n20191115T033655Z\nb2536"
    )


def test_canonical_form_details() -> None:
    request = httpx.Request(
        "POST",
        "https://ims.example.test:8443/v2/cloud%20images/action?b=2&a=&a=1&sp=x%20y",
        json={"name": "n"},
    )
    canonical = canonical_request(request, ["host"]).split("\n")
    assert canonical[1] == "/v2/cloud%20images/action/"
    assert canonical[2] == "a=&a=1&b=2&sp=x%20y"
    assert canonical[3] == "host:ims.example.test:8443"
    assert canonical[-1] == hashlib.sha256(request.content).hexdigest()


def test_project_and_security_token_headers_are_signed() -> None:
    request = httpx.Request("POST", "https://ims.example.test/v2/cloudimages/action", json={"a": 1})
    auth = AkSkAuth(
        AK, SecretStr(SK), project_id="p1", security_token=SecretStr("ST-1234"), clock=lambda: VECTOR_TIME
    )
    auth.sign(request)
    assert request.headers["X-Project-Id"] == "p1"
    assert request.headers["X-Security-Token"] == "ST-1234"
    assert (
        "SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token,"
        in (request.headers["Authorization"])
    )
    assert SK not in repr(auth)


async def test_aksk_auth_flow_signs_each_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    auth = AkSkAuth(AK, SecretStr(SK), clock=lambda: VECTOR_TIME)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        await client.get(VECTOR_URL, headers={"Content-Type": "application/json"})
    assert (
        seen[0]
        .headers["Authorization"]
        .endswith("7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe")
    )


class Counter:
    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls = 0

    async def __call__(self) -> IamToken:
        self.calls += 1
        await asyncio.sleep(0)
        return make_token(self.tokens.pop(0))


async def test_token_is_sent_and_refreshed_once_on_401() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["X-Auth-Token"])
        return httpx.Response(401 if request.headers["X-Auth-Token"] == "old-token" else 200, json={})

    refresh = Counter("new-token")
    auth = TokenAuth(make_token("old-token"), refresh=refresh)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        response = await client.post("https://ims.example.test/x", json={"a": 1})
    assert response.status_code == 200
    assert sent == ["old-token", "new-token"]
    assert refresh.calls == 1
    assert auth.token.value.get_secret_value() == "new-token"


async def test_second_401_is_returned_without_a_retry_storm() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, json={"error": {"code": 401, "message": "Invalid token.", "title": "x"}})

    refresh = Counter("still-bad")
    auth = TokenAuth(make_token("bad"), refresh=refresh)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        response = await client.get("https://ims.example.test/x")
    assert response.status_code == 401
    assert calls == 2
    assert refresh.calls == 1


async def test_without_refresh_a_401_is_returned() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), auth=TokenAuth(make_token())
    ) as client:
        assert (await client.get("https://ims.example.test/x")).status_code == 401
    assert calls == 1


async def test_concurrent_401s_share_one_refresh() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401 if request.headers["X-Auth-Token"] == "old-token" else 200)

    refresh = Counter("new-token", "newer-token")
    auth = TokenAuth(make_token("old-token"), refresh=refresh)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        responses = await asyncio.gather(*(client.get("https://ims.example.test/x") for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    assert refresh.calls == 1


async def test_token_close_to_expiry_is_refreshed_before_sending() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["X-Auth-Token"])
        return httpx.Response(200)

    refresh = Counter("fresh-token")
    auth = TokenAuth(make_token("expiring", hours=0.001), refresh=refresh)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
        await client.get("https://ims.example.test/x")
    assert sent == ["fresh-token"]


def test_token_auth_repr_hides_the_token() -> None:
    auth = TokenAuth(make_token("super-secret-token"))
    assert "super-secret-token" not in repr(auth)


@pytest.mark.parametrize("clock_time", [datetime(2026, 1, 5, 23, 59, 59, tzinfo=UTC)])
def test_sdk_date_comes_from_the_injected_clock(clock_time: datetime) -> None:
    request = httpx.Request("GET", "https://ecs.example.test/v1/p/cloudservers/detail")
    AkSkAuth(AK, SecretStr(SK), clock=lambda: clock_time).sign(request)
    assert request.headers["X-Sdk-Date"] == "20260105T235959Z"
