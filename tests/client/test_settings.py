"""Settings: profiles, derived endpoints, overrides, masking, .env, and the transport check."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from imsflow.errors import ConfigError
from imsflow.settings import LOCAL_ENDPOINT, ImsflowSettings, Profile

from .conftest import PASSWORD, make_settings


@pytest.mark.parametrize(
    ("profile", "region", "service", "url"),
    [
        ("otc", "eu-de", "iam", "https://iam.eu-de.otc.t-systems.com"),
        ("otc", "eu-nl", "ims", "https://ims.eu-nl.otc.t-systems.com"),
        ("otc", "eu-de", "ecs", "https://ecs.eu-de.otc.t-systems.com"),
        ("huaweicloud", "ap-southeast-1", "ims", "https://ims.ap-southeast-1.myhuaweicloud.com"),
        ("huaweicloud", "cn-north-4", "iam", "https://iam.cn-north-4.myhuaweicloud.com"),
        ("local", "eu-de", "iam", LOCAL_ENDPOINT),
        ("local", "eu-de", "ims", LOCAL_ENDPOINT),
    ],
)
def test_derived_endpoints(profile: str, region: str, service: str, url: str) -> None:
    settings = make_settings(profile=profile, region=region)
    assert settings.endpoint(service) == url  # type: ignore[arg-type]


def test_overrides_win_and_lose_their_trailing_slash() -> None:
    settings = make_settings(ims_url="https://ims.example.test:8443/", region="eu-nl")
    assert settings.endpoint("ims") == "https://ims.example.test:8443"
    assert settings.endpoint("ecs") == "https://ecs.eu-nl.otc.t-systems.com"


def test_defaults() -> None:
    settings = ImsflowSettings(_env_file=None)
    assert settings.profile is Profile.local
    assert settings.region == "eu-de"
    assert settings.verify_tls is True
    assert settings.allow_insecure is False
    assert (settings.connect_timeout, settings.read_timeout, settings.job_timeout) == (10, 60, 1800)
    assert (settings.poll_initial_delay, settings.poll_max_interval) == (2, 30)
    assert settings.retry_backoff == 2


def test_local_profile_gets_the_demo_account() -> None:
    settings = ImsflowSettings(_env_file=None)
    assert (settings.domain, settings.username) == ("demo", "demo")
    assert settings.password is not None
    assert settings.password.get_secret_value() == "demo-password"
    settings.check_transport()


def test_local_profile_keeps_given_credentials() -> None:
    settings = ImsflowSettings(_env_file=None, username="alice", password="pw-alice", domain="acme")
    assert settings.username == "alice"
    aksk = ImsflowSettings(_env_file=None, access_key="AK", secret_key="SK")
    assert aksk.username is None


def test_real_clouds_get_no_default_credentials() -> None:
    settings = ImsflowSettings(_env_file=None, profile="otc")
    assert settings.username is None
    assert settings.password is None
    with pytest.raises(ConfigError, match="IMSFLOW_USERNAME"):
        settings.check_transport()


def test_auth_mode() -> None:
    assert make_settings().auth_mode == "password"
    assert make_settings(access_key="AK").auth_mode == "password"
    assert make_settings(access_key="AK", secret_key="SK").auth_mode == "aksk"


def test_half_an_aksk_pair_is_a_config_error() -> None:
    settings = ImsflowSettings(_env_file=None, profile="otc", access_key="AK")
    with pytest.raises(ConfigError, match="both"):
        settings.check_transport()


def test_masked_shows_every_setting_and_hides_secrets() -> None:
    settings = make_settings(secret_key="SK-very-secret", access_key="AK1", security_token="ST-secret")
    shown = settings.masked()
    assert set(ImsflowSettings.model_fields) <= set(shown)
    assert shown["password"] == "**********"
    assert shown["secret_key"] == "**********"
    assert shown["security_token"] == "**********"
    assert shown["result_key"] == "(unset)"
    assert shown["project_id"] == "(unset)"
    assert shown["access_key"] == "AK1"
    assert shown["ims_url"] == "https://ims.eu-de.otc.t-systems.com"
    assert shown["profile"] == "otc"
    text = repr(shown) + repr(settings) + str(settings)
    for secret in (PASSWORD, "SK-very-secret", "ST-secret"):
        assert secret not in text


def test_environment_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "IMSFLOW_PROFILE=huaweicloud\nIMSFLOW_REGION=eu-west-101\nIMSFLOW_PASSWORD=from-file\n"
        "IMSFLOW_JOB_TIMEOUT=60\nUNRELATED=1\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("IMSFLOW_REGION", "ap-southeast-1")  # the environment beats the file
    settings = ImsflowSettings(_env_file=env_file)
    assert settings.profile is Profile.huaweicloud
    assert settings.region == "ap-southeast-1"
    assert settings.job_timeout == 60
    assert settings.password == SecretStr("from-file")


def test_env_file_is_read_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("IMSFLOW_REGION=eu-nl\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert ImsflowSettings().region == "eu-nl"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8780", "http://localhost:9000", "http://[::1]:8780", "https://ims.example.test"],
)
def test_transport_check_accepts_tls_and_loopback(url: str) -> None:
    make_settings(ims_url=url).check_transport()


def test_transport_check_refuses_plain_http_to_remote_hosts() -> None:
    settings = make_settings(ims_url="http://10.0.0.5:8780")
    with pytest.raises(ConfigError, match="plain http") as info:
        settings.check_transport()
    assert "IMSFLOW_ALLOW_INSECURE" in info.value.hint
    make_settings(ims_url="http://10.0.0.5:8780", allow_insecure=True).check_transport()


def test_transport_check_refuses_non_http_urls() -> None:
    with pytest.raises(ConfigError, match="not an http"):
        make_settings(iam_url="ftp://iam.example.test").check_transport()


def test_aksk_needs_no_password() -> None:
    ImsflowSettings(_env_file=None, profile="otc", access_key="AK", secret_key="SK").check_transport()


def test_job_timeout_in_whole_minutes_for_the_flow_parameters() -> None:
    from imsflow.settings import ImsflowSettings

    assert ImsflowSettings(_env_file=None).job_timeout_minutes == 30
    assert ImsflowSettings(_env_file=None, job_timeout=90).job_timeout_minutes == 2
