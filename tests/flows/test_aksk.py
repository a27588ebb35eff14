"""AK/SK end to end: a flow run with an access key pair only (no password, no project ID)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from imsflow.auth import AkSkAuth
from imsflow.client import CloudClient
from imsflow.errors import AuthenticationError
from localcloud import LocalCloud
from tests.support import PROJECT_ID, WEB_1, cloud_runtime, make_cloud, settings_for, transport_for

AK = "HPUAEXAMPLEAK0000001"
SK = "aksk-Secret-not-in-any-log-0001"


def _cloud() -> LocalCloud:
    domain = {
        "name": "demo",
        "users": [{"name": "alice", "password": "unused-Passw0rd"}],
        "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
        "access_keys": [{"ak": AK, "sk": SK, "project": "eu-de", "user": "alice"}],
    }
    return make_cloud(domains=[domain])


def _aksk_settings() -> dict[str, Any]:
    return {"domain": None, "username": None, "password": None, "access_key": AK, "secret_key": SK}


async def test_flow_with_aksk_only_looks_up_the_project_once() -> None:
    cloud = _cloud()
    with cloud_runtime(cloud, **_aksk_settings()) as settings:
        assert settings.auth_mode == "aksk"
        assert settings.password is None
        assert settings.project_id is None
        result = await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="web-1-aksk"))
        assert isinstance(result, CreateImageResult)

    image = cloud.ims.images[result.image_id]
    assert image.status == "active"
    assert image.owner == PROJECT_ID
    assert len(cloud.ims.images) == 1
    stats = cloud.stats()
    assert stats.get("iam.create_token", 0) == 0, "AK/SK signs every request: no token, no password"
    # GET /v3/projects?name=eu-de once; the tasks after the first reuse the answer.
    assert stats["iam.list_projects"] == 1


async def _get_server(cloud: LocalCloud, auth: AkSkAuth) -> None:
    settings = settings_for(**_aksk_settings())
    async with CloudClient(settings, auth=auth, transport=transport_for(cloud), project_id=PROJECT_ID) as c:
        await c.ecs.get_server(WEB_1)


async def test_right_pair_is_accepted_through_the_client() -> None:
    cloud = _cloud()
    await _get_server(cloud, AkSkAuth(AK, SecretStr(SK), project_id=PROJECT_ID))
    assert cloud.stats()["ecs.show_server"] == 1


async def test_wrong_sk_is_rejected() -> None:
    cloud = _cloud()
    with pytest.raises(AuthenticationError, match=r"APIG\.0301.*signature") as raised:
        await _get_server(cloud, AkSkAuth(AK, SecretStr(SK + "x"), project_id=PROJECT_ID))
    assert raised.value.status == 401
    assert not raised.value.retryable


async def test_stale_sdk_date_is_rejected() -> None:
    cloud = _cloud()
    stale = cloud.clock.now() - timedelta(minutes=20)  # the cloud allows 15 minutes of skew
    with pytest.raises(AuthenticationError, match="signature expired") as raised:
        await _get_server(cloud, AkSkAuth(AK, SecretStr(SK), project_id=PROJECT_ID, clock=lambda: stale))
    assert raised.value.status == 401
    assert stale < datetime.now(UTC)
