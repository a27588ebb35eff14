"""AK/SK signing through the client, against the in-process local cloud: right pair, wrong SK, stale date.

The flow run with an access key pair only is in tests/flows/test_aksk.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from imsflow.auth import AkSkAuth
from imsflow.client import CloudClient
from imsflow.errors import AuthenticationError
from localcloud import LocalCloud
from tests.support import PROJECT_ID, WEB_1, make_cloud, settings_for, transport_for

AK = "HPUAEXAMPLEAK0000001"
SK = "aksk-Secret-not-in-any-log-0001"


def aksk_cloud() -> LocalCloud:
    """A cloud whose only way in for alice is an AK/SK pair (her password is never used)."""
    domain = {
        "name": "demo",
        "users": [{"name": "alice", "password": "unused-Passw0rd"}],
        "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
        "access_keys": [{"ak": AK, "sk": SK, "project": "eu-de", "user": "alice"}],
    }
    return make_cloud(domains=[domain])


def aksk_settings() -> dict[str, Any]:
    return {"domain": None, "username": None, "password": None, "access_key": AK, "secret_key": SK}


async def _get_server(cloud: LocalCloud, auth: AkSkAuth) -> None:
    settings = settings_for(**aksk_settings())
    async with CloudClient(settings, auth=auth, transport=transport_for(cloud), project_id=PROJECT_ID) as c:
        await c.ecs.get_server(WEB_1)


async def test_right_pair_is_accepted_through_the_client() -> None:
    cloud = aksk_cloud()
    await _get_server(cloud, AkSkAuth(AK, SecretStr(SK), project_id=PROJECT_ID))
    assert cloud.stats()["ecs.show_server"] == 1


async def test_wrong_sk_is_rejected() -> None:
    cloud = aksk_cloud()
    with pytest.raises(AuthenticationError, match=r"APIG\.0301.*signature") as raised:
        await _get_server(cloud, AkSkAuth(AK, SecretStr(SK + "x"), project_id=PROJECT_ID))
    assert raised.value.status == 401
    assert not raised.value.retryable


async def test_stale_sdk_date_is_rejected() -> None:
    cloud = aksk_cloud()
    stale = cloud.clock.now() - timedelta(minutes=20)  # the cloud allows 15 minutes of skew
    with pytest.raises(AuthenticationError, match="signature expired") as raised:
        await _get_server(cloud, AkSkAuth(AK, SecretStr(SK), project_id=PROJECT_ID, clock=lambda: stale))
    assert raised.value.status == 401
    assert stale < datetime.now(UTC)
