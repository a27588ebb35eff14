"""Helpers for the client library tests: the page examples, settings and tokens built in code."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from imsflow.models import IamToken
from imsflow.settings import ImsflowSettings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "api"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
SERVER_ID = "877a2cda-ba63-4e1e-b95f-e67e48b6129a"
IMAGE_ID = "3f7185de-b59a-4bb8-aa1d-7a513528b0e9"
TOKEN_VALUE = "MIIDkgYJKoZIhvcNAQcCoIIDgzCCA38CAQExDTALBglghkgBZQMEAgEwgXXXXX-test-token"
PASSWORD = "s3cret-Passw0rd"
IAM = "https://iam.eu-de.otc.t-systems.com"
ECS = "https://ecs.eu-de.otc.t-systems.com"
IMS = "https://ims.eu-de.otc.t-systems.com"


def load(name: str) -> Any:
    """A page example from tests/fixtures/api (see the README there for its source)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def make_settings(**values: Any) -> ImsflowSettings:
    """Settings from keyword arguments only: never the developer's .env or environment."""
    values.setdefault("profile", "otc")
    if values["profile"] != "local":
        values.setdefault("domain", "domain A")
        values.setdefault("username", "user A")
        values.setdefault("password", PASSWORD)
    return ImsflowSettings(_env_file=None, **values)


def make_token(
    value: str = TOKEN_VALUE, *, project_id: str | None = PROJECT_ID, hours: float = 24
) -> IamToken:
    now = datetime.now(UTC)
    return IamToken(
        value=SecretStr(value),
        expires_at=now + timedelta(hours=hours),
        issued_at=now,
        project_id=project_id,
        project_name="eu-de",
        user_name="user A",
        domain_name="domain A",
    )


@pytest.fixture
def settings() -> ImsflowSettings:
    return make_settings(project_id=PROJECT_ID)


@pytest.fixture
def token() -> IamToken:
    return make_token()


@pytest.fixture
def fixture_loader() -> Callable[[str], Any]:
    return load
