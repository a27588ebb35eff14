"""Log redaction: registered secrets and auth header values never reach a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from imsflow.auth import AkSkAuth, TokenAuth
from imsflow.redact import MASK, RedactingFilter, install_redaction, redact, register_secret

from .conftest import make_token


@pytest.fixture
def captured() -> Iterator[list[str]]:
    logger = logging.getLogger("imsflow.test-redact")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)


def test_registered_secrets_are_masked_in_messages_and_args(captured: list[str]) -> None:
    register_secret("hunter2-password")
    log = logging.getLogger("imsflow.test-redact")
    log.info("login with %s for %s", "hunter2-password", "alice")
    log.info("inline hunter2-password too")
    assert captured == [f"login with {MASK} for alice", f"inline {MASK} too"]


@pytest.mark.parametrize(
    "text",
    [
        "X-Auth-Token: MIIDkgYJKoZIhvcNAQ",
        "headers={'x-auth-token': 'MIIDkgYJKoZIhvcNAQ', 'host': 'ims'}",
        'X-Subject-Token="MIIDkgYJKoZIhvcNAQ"',
        "Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=MIIDkgYJKoZIhvcNAQ",
        "[('x-security-token', 'MIIDkgYJKoZIhvcNAQ')]",
    ],
)
def test_header_values_are_masked(text: str) -> None:
    cleaned = redact(text)
    assert "MIIDkgYJKoZIhvcNAQ" not in cleaned
    assert MASK in cleaned


def test_other_text_is_untouched() -> None:
    assert redact("GET /v2/cloudimages -> 200") == "GET /v2/cloudimages -> 200"


def test_short_values_are_not_registered() -> None:
    register_secret("ab")
    assert redact("table abc") == "table abc"


def test_auth_registers_what_it_unwraps() -> None:
    TokenAuth(make_token("token-value-registered-by-auth"))
    AkSkAuth("AK", SecretStr("sk-registered-by-auth"), security_token=SecretStr("st-registered-by-auth"))
    text = redact("token-value-registered-by-auth sk-registered-by-auth st-registered-by-auth")
    assert text == f"{MASK} {MASK} {MASK}"


def test_install_redaction_covers_httpx_logs(caplog: pytest.LogCaptureFixture) -> None:
    installed = install_redaction("httpx")
    try:
        caplog.set_level(logging.DEBUG, logger="httpx")
        register_secret("secret-in-httpx-log")
        logging.getLogger("httpx").debug("sending %s", {"X-Auth-Token": "secret-in-httpx-log"})
        assert "secret-in-httpx-log" not in caplog.text
    finally:
        logging.getLogger("httpx").removeFilter(installed)


async def test_client_debug_log_has_no_token(caplog: pytest.LogCaptureFixture) -> None:
    from imsflow.client import CloudClient

    from .conftest import make_settings

    caplog.set_level(logging.DEBUG)
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"quotas": {"resources": []}}))
    auth = TokenAuth(make_token("token-that-must-not-be-logged"))
    async with CloudClient(make_settings(), auth=auth, transport=transport) as client:
        await client.ims.get_quota()
    assert "token-that-must-not-be-logged" not in caplog.text
    assert "/v1/cloudimages/quota" in caplog.text
