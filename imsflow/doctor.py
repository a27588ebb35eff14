"""``imsflow doctor``: a read-only check of the configured cloud before a first real run.

``run_checks(settings)`` runs the checks in order and returns one ``CheckResult`` each. Nothing is created,
stopped or deleted: the cloud sees a token request (password mode), and GETs that list servers, list images,
read the image quota and ask for a job that does not exist. A check that needs one that failed is reported
as skipped, never as a crash. No Prefect here; the CLI command (``cli.commands.doctor``) only prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx

from imsflow.client import CloudClient, login, ssl_context
from imsflow.errors import ApiError, ImsflowError, JobNotFoundError, TlsVerificationError
from imsflow.models import IamToken, ImageListQuery
from imsflow.settings import SERVICES, ImsflowSettings, Service, is_loopback

__all__ = [
    "CHECKS",
    "UNKNOWN_JOB_ID",
    "CheckResult",
    "CheckStatus",
    "run_checks",
]

#: The checks, in the order they run (and are printed).
CHECKS: tuple[str, ...] = (
    "settings",
    "dns",
    "tls",
    "token",
    "project",
    "ecs-list",
    "ims-list",
    "ims-quota",
    "ims-job",
)

#: A syntactically valid job id no cloud has issued: the job query must answer "job not found".
UNKNOWN_JOB_ID = "0" * 32
#: Error codes meaning "no such job": IMS (IMG.0023, "An exception occurred during task query") and the
#: ECS-style answer of a one-base-URL cloud (Common.0011, "Failed to query system tasks").
JOB_NOT_FOUND_CODES = frozenset({"IMG.0023", "Common.0011"})
#: API gateway: "API does not exist" (the path is not published on this endpoint).
NO_SUCH_API_CODES = frozenset({"APIG.0101"})


class CheckStatus(StrEnum):
    ok = "ok"
    failed = "failed"
    skipped = "skipped"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: what was found (``detail``), and what to do about a failure (``hint``)."""

    name: str
    status: CheckStatus
    detail: str
    hint: str | None = None
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.ok

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.failed


def _describe_error(exc: BaseException) -> tuple[str, str | None, str | None]:
    """(detail, hint, request id) of an exception, in one line."""
    if isinstance(exc, ApiError):
        message = " ".join(exc.message.split()) or "(no message)"
        return f"HTTP {exc.status} {exc.code or '-'}: {message} ({exc.url})", exc.hint, exc.request_id
    if isinstance(exc, ImsflowError):
        return str(exc), exc.hint, None
    return f"{type(exc).__name__}: {exc}", None, None


@dataclass
class _Doctor:
    settings: ImsflowSettings
    transport: httpx.AsyncBaseTransport | None
    timeout: float
    results: list[CheckResult] = field(default_factory=list)
    # What later checks need from earlier ones.
    urls_ok: bool = True
    bad_hosts: dict[str, str] = field(default_factory=dict)  # host -> which check failed it
    client: CloudClient | None = None
    token: IamToken | None = None
    project_id: str | None = None
    project_source: str = ""

    # ------------------------------------------------------------------------------------ helpers

    def add(
        self,
        name: str,
        status: CheckStatus,
        detail: str,
        hint: str | None = None,
        request_id: str | None = None,
    ) -> CheckResult:
        result = CheckResult(name, status, detail, hint, request_id)
        self.results.append(result)
        return result

    def passed(self, name: str) -> bool:
        return any(r.name == name and r.ok for r in self.results)

    def host(self, service: Service) -> str:
        return urlsplit(self.settings.endpoint(service)).hostname or ""

    def hosts(self) -> list[str]:
        seen: list[str] = []
        for service in SERVICES:
            host = self.host(service)
            if host not in seen:
                seen.append(host)
        return seen

    def blocked(self, needs: tuple[str, ...], services: tuple[Service, ...]) -> str | None:
        """Why a check cannot run: a check it needs did not pass, or its host failed DNS/TLS."""
        for need in needs:
            if not self.passed(need):
                return f"needs the {need} check"
        for service in services:
            host = self.host(service)
            if host in self.bad_hosts:
                return f"{service} host {host} failed the {self.bad_hosts[host]} check"
        return None

    async def guarded(
        self,
        name: str,
        check: Callable[[], Awaitable[None]],
        *,
        needs: tuple[str, ...] = (),
        services: tuple[Service, ...] = (),
    ) -> None:
        """Run ``check`` unless blocked; any error it raises becomes a failed result (never a crash)."""
        reason = self.blocked(needs, services)
        if reason is not None:
            self.add(name, CheckStatus.skipped, f"skipped: {reason}")
            return
        try:
            await check()
        except Exception as exc:  # a doctor reports, it does not crash
            detail, hint, request_id = _describe_error(exc)
            self.add(name, CheckStatus.failed, detail, hint, request_id)

    # ------------------------------------------------------------------------------------ checks

    async def check_settings(self) -> None:
        s = self.settings
        masked = s.masked()
        endpoints = {service: masked[f"{service}_url"] for service in SERVICES}
        if len(set(endpoints.values())) == 1:
            where = f"iam/ecs/ims {endpoints['iam']}"
        else:
            where = ", ".join(f"{service} {url}" for service, url in endpoints.items())
        if s.auth_mode == "aksk":
            who = f"AK/SK (AK {masked['access_key']}, SK {masked['secret_key']})"
        else:
            who = f"password ({masked['username']}@{masked['domain']}, password {masked['password']})"
        detail = f"profile {masked['profile']}, region {masked['region']}, {where}, auth {who}"
        if s.project_id:
            detail += f", project {s.project_id}"

        for service in SERVICES:
            url = s.endpoint(service)
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.urls_ok = False
                self.add(
                    "settings",
                    CheckStatus.failed,
                    f"{service} endpoint {url!r} is not an http(s) URL; {detail}",
                    f"Set IMSFLOW_{service.upper()}_URL to https://host[:port], or unset it.",
                )
                return
        problem: str | None = None
        hint = (
            "Set IMSFLOW_DOMAIN, IMSFLOW_USERNAME and IMSFLOW_PASSWORD, "
            "or IMSFLOW_ACCESS_KEY and IMSFLOW_SECRET_KEY."
        )
        if s.auth_mode == "password":
            if bool(s.access_key) != bool(s.secret_key):
                have, lack = ("ACCESS_KEY", "SECRET_KEY") if s.access_key else ("SECRET_KEY", "ACCESS_KEY")
                problem = f"IMSFLOW_{have} is set but IMSFLOW_{lack} is not"
                hint = "Set both for AK/SK signing, or remove the one set and use password login."
            else:
                missing = [
                    f"IMSFLOW_{name.upper()}"
                    for name in ("domain", "username", "password")
                    if not getattr(s, name)
                ]
                if missing:
                    problem = f"no credentials: missing {', '.join(missing)}"
        if problem is not None:
            self.add("settings", CheckStatus.failed, f"{problem}; {detail}", hint)
            return
        self.add("settings", CheckStatus.ok, detail)

    async def check_dns(self) -> None:
        loop = asyncio.get_running_loop()
        shown: list[str] = []
        failures: list[str] = []
        for host in self.hosts():
            if is_loopback(host):
                shown.append(f"{host} (loopback)")
                continue
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=self.timeout
                )
            except TimeoutError:
                failures.append(f"{host}: no answer within {self.timeout:g} s")
                self.bad_hosts[host] = "dns"
            except OSError as exc:
                failures.append(f"{host}: {exc.strerror or exc}")
                self.bad_hosts[host] = "dns"
            else:
                addresses = sorted({str(info[4][0]) for info in infos})
                shown.append(f"{host} -> {', '.join(addresses[:2])}{' ...' if len(addresses) > 2 else ''}")
        if failures:
            self.add(
                "dns",
                CheckStatus.failed,
                "cannot resolve " + "; ".join(failures),
                "Check the endpoint host names (IMSFLOW_REGION, IMSFLOW_*_URL) and this host's DNS / proxy.",
            )
        else:
            self.add("dns", CheckStatus.ok, "; ".join(shown))

    async def check_tls(self) -> None:
        shown: list[str] = []
        failures: list[str] = []
        hints: list[str] = []
        checked: set[tuple[str, str, int]] = set()
        for service in SERVICES:
            parts = urlsplit(self.settings.endpoint(service))
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if (parts.scheme, host, port) in checked:
                continue
            checked.add((parts.scheme, host, port))
            if host in self.bad_hosts:
                shown.append(f"{host}: not checked (dns failed)")
                continue
            if parts.scheme == "http":
                if is_loopback(host):
                    shown.append(f"{host}:{port} plain http (loopback only)")
                elif self.settings.allow_insecure:
                    shown.append(f"{host}:{port} plain http to a remote host (IMSFLOW_ALLOW_INSECURE=true)")
                else:
                    failures.append(f"{host}:{port} is plain http to a remote host")
                    hints.append("Use https, or set IMSFLOW_ALLOW_INSECURE=true if you really mean it.")
                    self.bad_hosts[host] = "tls"
                continue
            try:
                version = await self._handshake(host, port)
            except TimeoutError:
                failures.append(f"{host}:{port}: no TLS handshake within {self.timeout:g} s")
                hints.append("Check the network path (firewall, proxy) to the endpoint.")
                self.bad_hosts[host] = "tls"
            except ssl.SSLCertVerificationError as exc:
                failures.append(f"{host}:{port}: certificate not trusted: {exc.verify_message or exc}")
                hints.append(TlsVerificationError.hint)
                self.bad_hosts[host] = "tls"
            except (OSError, ssl.SSLError) as exc:
                failures.append(f"{host}:{port}: {type(exc).__name__}: {exc}")
                hints.append("Check the endpoint URL and port, and the network path to it.")
                self.bad_hosts[host] = "tls"
            else:
                note = (
                    ""
                    if self.settings.verify_tls
                    else ", certificate NOT verified (IMSFLOW_VERIFY_TLS=false)"
                )
                shown.append(f"{host}:{port} {version}{note}")
        if failures:
            self.add("tls", CheckStatus.failed, "; ".join(failures), " ".join(dict.fromkeys(hints)))
        else:
            self.add("tls", CheckStatus.ok, "; ".join(shown))

    async def _handshake(self, host: str, port: int) -> str:
        context = ssl_context(self.settings.verify_tls)
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), timeout=self.timeout
        )
        try:
            ssl_object: Any = writer.get_extra_info("ssl_object")
            return str(ssl_object.version()) if ssl_object is not None else "TLS"
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1)

    async def check_token(self) -> None:
        s = self.settings
        if s.auth_mode == "aksk":
            self.client = CloudClient.from_settings(s, transport=self.transport)
            projects = await self.client.iam.list_projects(name=s.region)
            matches = [p for p in projects if p.name == s.region]
            if matches and not s.project_id:
                self.project_id, self.project_source = matches[0].id, f"IAM project named {s.region}"
            seen = f"project {s.region} visible" if matches else f"no project named {s.region} visible"
            self.add("token", CheckStatus.ok, f"AK/SK signature accepted by IAM (GET /v3/projects); {seen}")
            return
        self.token = token = await login(s, transport=self.transport)
        self.client = CloudClient.from_settings(s, token=token, transport=self.transport)
        until = token.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        user = f"{token.user_name or s.username}@{token.domain_name or s.domain}"
        project = token.project_name or token.project_id or "(unscoped)"
        self.add("token", CheckStatus.ok, f"token for {user}, project {project}, valid until {until}")

    async def check_project(self) -> None:
        assert self.client is not None
        s = self.settings
        if s.project_id:
            self.project_id, self.project_source = s.project_id, "IMSFLOW_PROJECT_ID"
        elif self.token is not None and self.token.project_id:
            self.project_id, self.project_source = self.token.project_id, "the token's scope"
        elif self.project_id is None:
            self.project_id = await self.client.resolve_project_id()
            self.project_source = f"IAM project named {s.region}"
        self.client.project_id = self.project_id
        self.add("project", CheckStatus.ok, f"{self.project_id} (from {self.project_source})")

    async def check_ecs_list(self) -> None:
        assert self.client is not None
        page = await self.client.ecs.list_servers(limit=1)
        noun = "server" if page.count == 1 else "servers"
        self.add(
            "ecs-list",
            CheckStatus.ok,
            f"{page.count} {noun} in the project (GET /v1/{{project_id}}/cloudservers/detail)",
        )

    async def check_ims_list(self) -> None:
        assert self.client is not None
        images = await self.client.ims.list_images(ImageListQuery(imagetype="private", limit=1))
        seen = "private images listed" if images else "no private images yet"
        self.add("ims-list", CheckStatus.ok, f"{seen} (GET /v2/cloudimages)")

    async def check_ims_quota(self) -> None:
        assert self.client is not None
        quota = (await self.client.ims.get_quota()).get("image")
        if quota is None:
            self.add("ims-quota", CheckStatus.ok, "answered, but reports no 'image' quota")
        elif quota.used >= quota.quota:
            self.add(
                "ims-quota",
                CheckStatus.failed,
                f"{quota.used}/{quota.quota} private images: the quota is used up, "
                "a new image would be refused",
                "Delete unused private images (imsflow prune) or ask for a higher image quota.",
            )
        else:
            self.add("ims-quota", CheckStatus.ok, f"{quota.used}/{quota.quota} private images")

    async def check_ims_job(self) -> None:
        assert self.client is not None
        via = _job_setting(self.settings)
        try:
            await self.client.ims.get_job(UNKNOWN_JOB_ID)
        except ApiError as exc:
            path = _job_path(exc.url, self.settings.endpoint("ims"), self.project_id)
            if isinstance(exc, JobNotFoundError) or exc.code in JOB_NOT_FOUND_CODES:
                self.add(
                    "ims-job",
                    CheckStatus.ok,
                    f"GET {path}{via} answers (unknown job id -> {exc.code or f'HTTP {exc.status}'})",
                )
                return
            detail, hint, request_id = _describe_error(exc)
            if exc.code in NO_SUCH_API_CODES or exc.status == 404:
                hint = _job_hint(path)
            self.add("ims-job", CheckStatus.failed, f"GET {path}{via}: {detail}", hint, request_id)
            return
        self.add("ims-job", CheckStatus.ok, f"job query answers{via}")


def _job_setting(settings: ImsflowSettings) -> str:
    """`` (ims_job_api X, where from)``: the job query API the settings choose."""
    origin = "IMSFLOW_IMS_JOB_API" if settings.ims_job_api else "profile default"
    return f" (ims_job_api {settings.effective_ims_job_api}, {origin})"


def _job_hint(path: str) -> str:
    return (
        f"The IMS endpoint does not serve GET {path}: the job query path differs between clouds "
        "(Huawei Cloud: /v1/cloudimages/job/{job_id}; OTC: /v1/{project_id}/jobs/{job_id}). "
        "Set IMSFLOW_IMS_JOB_API to cloudimages-job or project-jobs, or check IMSFLOW_IMS_URL."
    )


def _job_path(url: str, endpoint: str, project_id: str | None) -> str:
    """The path of ``url`` under ``endpoint``, with the project and job ids as placeholders."""
    path = url[len(endpoint) :] if url.startswith(endpoint) else urlsplit(url).path
    path = path.split("?", 1)[0]
    if project_id:
        path = path.replace(f"/{project_id}/", "/{project_id}/")
    return path.replace(UNKNOWN_JOB_ID, "{job_id}")


async def run_checks(
    settings: ImsflowSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float | None = None,
) -> list[CheckResult]:
    """Run every check in order (``CHECKS``); one result each. Read-only; never raises for a cloud problem.

    ``transport`` goes to the HTTP client (tests pass the local cloud's in-process transport); the DNS and
    TLS checks always use the network. ``timeout`` bounds each DNS lookup and TLS handshake (default: the
    settings' ``connect_timeout``).
    """
    doctor = _Doctor(settings, transport, timeout if timeout is not None else settings.connect_timeout)
    await doctor.guarded("settings", doctor.check_settings)
    await doctor.guarded("dns", doctor.check_dns, needs=("settings",) if not doctor.urls_ok else ())
    await doctor.guarded("tls", doctor.check_tls, needs=("dns",) if not doctor.urls_ok else ())
    try:
        # Network problems block per host: an unresolvable IMS host does not stop the IAM checks.
        await doctor.guarded("token", doctor.check_token, needs=("settings",), services=("iam",))
        await doctor.guarded("project", doctor.check_project, needs=("token",), services=("iam",))
        await doctor.guarded("ecs-list", doctor.check_ecs_list, needs=("project",), services=("ecs",))
        await doctor.guarded("ims-list", doctor.check_ims_list, needs=("project",), services=("ims",))
        await doctor.guarded("ims-quota", doctor.check_ims_quota, needs=("project",), services=("ims",))
        await doctor.guarded("ims-job", doctor.check_ims_job, needs=("project",), services=("ims",))
    finally:
        if doctor.client is not None:
            await doctor.client.aclose()
    return doctor.results
