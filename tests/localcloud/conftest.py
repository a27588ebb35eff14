"""Fixtures for the local cloud tests: a ManualClock, the demo cloud, and a raw httpx client over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from localcloud import LocalCloud, ManualClock, Seed, demo_seed, parse_seed

PROJECT = "0123456789abcdef0123456789abcdef"
WEB1 = "6f1c2d7e-0000-4000-8000-000000000001"  # SHUTOFF in the demo seed
DB1 = "6f1c2d7e-0000-4000-8000-000000000002"  # ACTIVE in the demo seed
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

TokenFactory = Callable[..., Awaitable[str]]


def password_auth(
    user: str = "demo",
    password: str = "demo-password",
    domain: str = "demo",
    project: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
            },
            "scope": {"project": project if project is not None else {"name": "eu-de"}},
        }
    }
    return body


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def seed() -> Seed:
    return demo_seed()


@pytest.fixture
def cloud(seed: Seed, clock: ManualClock) -> LocalCloud:
    return LocalCloud(seed, clock)


@pytest.fixture
async def client(cloud: LocalCloud) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cloud.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8780") as c:
        yield c


@pytest.fixture
def get_token(client: httpx.AsyncClient) -> TokenFactory:
    async def factory(**kwargs: Any) -> str:
        r = await client.post("/iam/v3/auth/tokens", json=password_auth(**kwargs))
        assert r.status_code == 201, r.text
        return r.headers["X-Subject-Token"]

    return factory


@pytest.fixture
async def auth(get_token: TokenFactory) -> dict[str, str]:
    return {"X-Auth-Token": await get_token()}


def small_seed(**extra: Any) -> dict[str, Any]:
    """A seed with one account (d / u / p) and project eu-de (PROJECT); ``extra`` adds keys."""
    data: dict[str, Any] = {
        "domains": [
            {
                "name": "d",
                "users": [{"name": "u", "password": "p"}],
                "projects": [{"id": PROJECT, "name": "eu-de"}],
            }
        ]
    }
    data.update(extra)
    return data


@asynccontextmanager
async def seeded(data: dict[str, Any]) -> AsyncIterator[tuple[LocalCloud, httpx.AsyncClient, dict[str, str]]]:
    """A cloud from ``data`` on a ManualClock, a client for it, and a token for u/p in domain d."""
    cloud = LocalCloud(parse_seed(data), ManualClock(START))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cloud.app), base_url="http://127.0.0.1"
    ) as c:
        r = await c.post("/v3/auth/tokens", json=password_auth("u", "p", "d"))
        assert r.status_code == 201, r.text
        yield cloud, c, {"X-Auth-Token": r.headers["X-Subject-Token"]}
