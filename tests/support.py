"""What tests share: the local cloud in-process on a manual clock, and settings pointing at it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from imsflow.settings import ImsflowSettings
from localcloud import LocalCloud, ManualClock, Seed

BASE_URL = "http://127.0.0.1:8780"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
WEB_1 = "6f1c2d7e-0000-4000-8000-000000000001"  # SHUTOFF
DB_1 = "6f1c2d7e-0000-4000-8000-000000000002"  # ACTIVE
PASSWORD = "test-Passw0rd-not-in-any-log"


def seed_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "domains": [
            {
                "name": "demo",
                "users": [{"name": "alice", "password": PASSWORD}],
                "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
            }
        ],
        "servers": [
            {"id": WEB_1, "name": "web-1", "project": "eu-de", "status": "SHUTOFF", "tags": ["env=prod"]},
            {"id": DB_1, "name": "db-1", "project": "eu-de", "status": "ACTIVE"},
        ],
        "timing": {"image_job_seconds": 60, "stop_seconds": 10, "start_seconds": 10},
    }
    data.update(overrides)
    return data


def make_cloud(**overrides: Any) -> LocalCloud:
    # The clock starts at real time: tokens are judged against the wall clock by the client.
    return LocalCloud(seed=Seed.model_validate(seed_data(**overrides)), clock=ManualClock(datetime.now(UTC)))


def settings_for(**overrides: Any) -> ImsflowSettings:
    values: dict[str, Any] = {
        "profile": "local",
        "iam_url": BASE_URL,
        "ecs_url": BASE_URL,
        "ims_url": BASE_URL,
        "domain": "demo",
        "username": "alice",
        "password": PASSWORD,
        "poll_initial_delay": 2.0,
    }
    values.update(overrides)
    return ImsflowSettings(_env_file=None, **values)  # type: ignore[call-arg]


def transport_for(cloud: LocalCloud) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=cloud.app)


def virtual_time(cloud: LocalCloud) -> dict[str, Any]:
    """Runtime pieces that make waiting advance the local cloud's clock instead of sleeping."""
    clock = cloud.clock
    assert isinstance(clock, ManualClock)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    return {"clock": lambda: clock.now().timestamp(), "sleep": sleep}


@contextmanager
def cloud_runtime(cloud: LocalCloud, **settings_overrides: Any) -> Iterator[ImsflowSettings]:
    from tasks import runtime

    settings = settings_for(**settings_overrides)
    with runtime.use_runtime(
        settings_factory=lambda: settings, transport=transport_for(cloud), **virtual_time(cloud)
    ):
        yield settings
