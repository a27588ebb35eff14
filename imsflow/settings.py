"""Settings: one ``ImsflowSettings`` built at the entry point and passed down.

Read from ``IMSFLOW_*`` environment variables and a ``.env`` file; tests build it from keyword
arguments (and pass ``_env_file=None`` so a developer's ``.env`` never leaks in).
"""

from __future__ import annotations

import ipaddress
import math
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from imsflow.errors import ConfigError

__all__ = [
    "LOCAL_DEMO_ACCOUNT",
    "LOCAL_ENDPOINT",
    "SERVICES",
    "ImsJobApi",
    "ImsflowSettings",
    "Profile",
    "Service",
    "is_loopback",
]

Service = Literal["iam", "ecs", "ims"]
#: How imsflow queries an IMS job: ``project-jobs`` is ``GET /v1/{project_id}/jobs/{job_id}`` (the only
#: one OTC documents; Huawei Cloud marks it deprecated), ``cloudimages-job`` is
#: ``GET /v1/cloudimages/job/{job_id}`` (Huawei Cloud's ShowJobProgress: no project ID in the path, the same
#: top-level fields).
ImsJobApi = Literal["project-jobs", "cloudimages-job"]
SERVICES: tuple[Service, ...] = ("iam", "ecs", "ims")

LOCAL_ENDPOINT = "http://127.0.0.1:8780"
# The local cloud's demo account (domain, user, password), so `imsflow create` works with zero config.
LOCAL_DEMO_ACCOUNT = ("demo", "demo", "demo-password")

_MASK = "**********"
_UNSET = "(unset)"


class Profile(StrEnum):
    """Which cloud the endpoints point at."""

    local = "local"
    huaweicloud = "huaweicloud"
    otc = "otc"


_ENDPOINT_PATTERNS: dict[Profile, str] = {
    Profile.huaweicloud: "https://{service}.{region}.myhuaweicloud.com",
    Profile.otc: "https://{service}.{region}.otc.t-systems.com",
}

_IMS_JOB_APIS: dict[Profile, ImsJobApi] = {
    Profile.huaweicloud: "cloudimages-job",
    Profile.otc: "project-jobs",
    Profile.local: "project-jobs",
}


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: where plain http cannot leave the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ImsflowSettings(BaseSettings):
    """Everything imsflow needs to reach a cloud; secrets are ``SecretStr``."""

    model_config = SettingsConfigDict(
        env_prefix="IMSFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    profile: Profile = Field(default=Profile.local, description="local, huaweicloud or otc.")
    region: str = Field(default="eu-de", description="Region, also the IAM project name (eu-de, eu-nl, ...).")
    iam_url: str | None = Field(default=None, description="IAM endpoint; derived from profile and region.")
    ecs_url: str | None = Field(default=None, description="ECS endpoint; derived from profile and region.")
    ims_url: str | None = Field(default=None, description="IMS endpoint; derived from profile and region.")
    ims_job_api: ImsJobApi | None = Field(
        default=None,
        description="How to query IMS jobs: project-jobs (GET /v1/{project_id}/jobs/{job_id}) or "
        "cloudimages-job (GET /v1/cloudimages/job/{job_id}, Huawei Cloud's successor of the deprecated "
        "first). Default by profile: huaweicloud cloudimages-job; otc and local project-jobs.",
    )
    domain: str | None = Field(default=None, description="Account (domain) name for password login.")
    username: str | None = Field(default=None, description="IAM user name for password login.")
    password: SecretStr | None = Field(default=None, description="IAM user password.")
    access_key: str | None = Field(default=None, description="AK for AK/SK request signing.")
    secret_key: SecretStr | None = Field(default=None, description="SK for AK/SK request signing.")
    security_token: SecretStr | None = Field(default=None, description="Security token of a temporary AK/SK.")
    project_id: str | None = Field(default=None, description="Project id; looked up by region name if unset.")
    verify_tls: bool = Field(default=True, description="Verify TLS certificates.")
    allow_insecure: bool = Field(default=False, description="Allow plain http to a non-loopback host.")
    connect_timeout: float = Field(default=10, gt=0, description="Seconds to connect.")
    read_timeout: float = Field(default=60, gt=0, description="Seconds to wait for a response.")
    job_timeout: float = Field(default=1800, gt=0, description="Seconds to wait for an image job.")
    poll_initial_delay: float = Field(default=2, ge=0, description="Seconds before the first job poll.")
    poll_max_interval: float = Field(default=30, gt=0, description="Longest pause between job polls.")
    retry_backoff: float = Field(
        default=2,
        gt=0,
        le=30,
        description="Seconds before the first retry of a call that failed transiently (throttling, 5xx, "
        "transport error), doubled for each further one up to 30 s, stretched by up to half and never "
        "shorter than the cloud's Retry-After: for task retries and the waits for an ECS or an image "
        "(job status polls back off from the poll interval).",
    )
    result_key: SecretStr | None = Field(default=None, description="Fernet key for encrypted results.")

    @model_validator(mode="after")
    def _local_demo_account(self) -> ImsflowSettings:
        # Only the emulator gets default credentials; a real cloud never does.
        if self.profile is Profile.local and not self._has_credentials():
            domain, username, password = LOCAL_DEMO_ACCOUNT
            self.domain = domain
            self.username = username
            self.password = SecretStr(password)
        return self

    def _has_credentials(self) -> bool:
        return bool(self.username or self.password or self.access_key or self.secret_key)

    @property
    def job_timeout_minutes(self) -> int:
        """``job_timeout`` in whole minutes (rounded up), as the flows' parameters take it."""
        return max(1, math.ceil(self.job_timeout / 60))

    def endpoint(self, service: Service) -> str:
        """Base URL of ``service`` without a trailing slash."""
        override: str | None = getattr(self, f"{service}_url")
        if override:
            return override.rstrip("/")
        if self.profile is Profile.local:
            return LOCAL_ENDPOINT
        return _ENDPOINT_PATTERNS[self.profile].format(service=service, region=self.region)

    @property
    def effective_ims_job_api(self) -> ImsJobApi:
        """``ims_job_api`` if set, else the profile's default."""
        return self.ims_job_api or _IMS_JOB_APIS[self.profile]

    @property
    def auth_mode(self) -> Literal["password", "aksk"]:
        """``aksk`` when an AK and an SK are set, else ``password``."""
        return "aksk" if self.access_key and self.secret_key else "password"

    def masked(self) -> dict[str, str]:
        """Every effective setting as text; secrets masked, unset values as ``(unset)``."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                shown[name] = _UNSET
            elif isinstance(value, SecretStr):
                shown[name] = _MASK
            elif isinstance(value, StrEnum):
                shown[name] = value.value
            else:
                shown[name] = str(value)
        for service in SERVICES:
            shown[f"{service}_url"] = self.endpoint(service)
        shown["ims_job_api"] = self.effective_ims_job_api
        shown["auth_mode"] = self.auth_mode
        return shown

    def check_transport(self) -> None:
        """Raise ``ConfigError`` for plain http to a remote host or missing credentials."""
        for service in SERVICES:
            url = self.endpoint(service)
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"{service} endpoint {url!r} is not an http(s) URL",
                    hint=f"Set IMSFLOW_{service.upper()}_URL to https://host[:port].",
                )
            if parts.scheme == "http" and not is_loopback(parts.hostname) and not self.allow_insecure:
                raise ConfigError(
                    f"{service} endpoint {url} uses plain http to a remote host; "
                    "credentials would travel unencrypted",
                    hint="Use https, or set IMSFLOW_ALLOW_INSECURE=true if you really mean it.",
                )
        if self.profile is not Profile.local:
            if self.auth_mode == "aksk":
                return
            if self.access_key or self.secret_key:
                raise ConfigError(
                    "AK/SK signing needs both IMSFLOW_ACCESS_KEY and IMSFLOW_SECRET_KEY",
                    hint="Set both, or remove them and use password login.",
                )
            missing = [
                f"IMSFLOW_{name.upper()}"
                for name in ("domain", "username", "password")
                if not getattr(self, name)
            ]
            if missing:
                raise ConfigError(
                    f"no credentials for profile {self.profile.value}: missing {', '.join(missing)}",
                    hint="Set IMSFLOW_DOMAIN, IMSFLOW_USERNAME and IMSFLOW_PASSWORD, "
                    "or IMSFLOW_ACCESS_KEY and IMSFLOW_SECRET_KEY.",
                )
