"""The ImsflowCredentials block: identity from the block only, host knobs from IMSFLOW_*."""

from __future__ import annotations

import pytest

from runtime.credentials import ImsflowCredentials


def test_block_identity_is_never_mixed_with_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stray AK/SK on the host must not turn a password block into AK/SK signing.
    monkeypatch.setenv("IMSFLOW_ACCESS_KEY", "HOSTAK")
    monkeypatch.setenv("IMSFLOW_SECRET_KEY", "host-sk")
    monkeypatch.setenv("IMSFLOW_USERNAME", "host-user")
    monkeypatch.setenv("IMSFLOW_JOB_TIMEOUT", "99")
    block = ImsflowCredentials(
        profile="otc", region="eu-nl", domain="acme", username="imaging", password="pw"
    )

    settings = block.to_settings()

    assert settings.auth_mode == "password"
    assert settings.access_key is None
    assert settings.secret_key is None
    assert settings.username == "imaging"
    assert settings.endpoint("ims") == "https://ims.eu-nl.otc.t-systems.com"
    assert settings.job_timeout == 99, "operational knobs still come from the host"


def test_aksk_block() -> None:
    block = ImsflowCredentials(
        profile="huaweicloud", region="ap-southeast-1", access_key="AK", secret_key="SK"
    )
    settings = block.to_settings()
    assert settings.auth_mode == "aksk"
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "SK"
    settings.check_transport()


def test_secrets_are_masked_in_the_block_schema_and_repr() -> None:
    block = ImsflowCredentials(username="u", password="s3cret", secret_key="also-s3cret")
    assert "s3cret" not in repr(block)
    properties = ImsflowCredentials.model_json_schema()["properties"]
    for name in ("password", "secret_key", "security_token"):
        assert properties[name]["anyOf"][0]["format"] == "password"
