"""imsflow.doctor against the in-process local cloud: what passes, what fails, what is skipped."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from imsflow.client import CloudClient, ssl_context
from imsflow.doctor import CHECKS, UNKNOWN_JOB_ID, CheckResult, CheckStatus, run_checks
from imsflow.errors import TlsVerificationError
from imsflow.settings import ImsflowSettings
from localcloud import LocalCloud
from localcloud.seed import FaultRuleSeed
from tests.support import BASE_URL, PROJECT_ID, CloudNetwork, make_cloud, settings_for

AK = "HPUAEXAMPLEAK0000001"
SK = "aksk-Secret-not-in-any-log-0001"


class Recording(httpx.AsyncBaseTransport):
    """The local cloud's in-process network, remembering every request's path and response headers."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.inner = CloudNetwork(cloud)
        self.seen: list[tuple[str, str, httpx.Headers]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.seen.append((request.method, request.url.path, response.headers))
        return response

    def headers_of(self, path_suffix: str) -> httpx.Headers:
        return next(h for _, path, h in reversed(self.seen) if path.endswith(path_suffix))


def check(
    cloud: LocalCloud, transport: httpx.AsyncBaseTransport | None = None, **settings: Any
) -> dict[str, CheckResult]:
    results = asyncio.run(
        run_checks(settings_for(**settings), transport=transport or CloudNetwork(cloud), timeout=3)
    )
    assert [r.name for r in results] == list(CHECKS)
    return {r.name: r for r in results}


def statuses(results: dict[str, CheckResult]) -> dict[str, str]:
    return {name: r.status.value for name, r in results.items()}


def test_everything_passes_on_the_local_cloud() -> None:
    results = check(make_cloud())
    assert all(r.ok for r in results.values()), statuses(results)
    assert "alice@demo" in results["settings"].detail
    assert "test-Passw0rd" not in results["settings"].detail  # masked
    assert "plain http (loopback only)" in results["tls"].detail
    assert "token for alice@demo, project eu-de, valid until" in results["token"].detail
    assert results["project"].detail.startswith(PROJECT_ID)
    assert results["ecs-list"].detail.startswith("2 servers")
    assert results["ims-quota"].detail == "0/50 private images"
    # One base URL: the shared job path answers as ECS does for an id nobody knows.
    assert "GET /v1/{project_id}/jobs/{job_id}" in results["ims-job"].detail
    assert "Common.0011" in results["ims-job"].detail


def test_service_prefixed_endpoints_pass_and_the_ims_job_query_answers_img_0023() -> None:
    results = check(
        make_cloud(), iam_url=f"{BASE_URL}/iam", ecs_url=f"{BASE_URL}/ecs", ims_url=f"{BASE_URL}/ims"
    )
    assert all(r.ok for r in results.values()), statuses(results)
    assert "IMG.0023" in results["ims-job"].detail
    # The path as the API pages name it: relative to the IMS endpoint, ids as placeholders.
    assert results["ims-job"].detail.startswith("GET /v1/{project_id}/jobs/{job_id} ")
    assert "ecs http://127.0.0.1:8780/ecs" in results["settings"].detail


def test_nothing_is_created_stopped_or_deleted() -> None:
    cloud = make_cloud()
    network = CloudNetwork(cloud)
    check(cloud, network)
    methods = {(c.method, c.path) for c in network.calls}
    assert {m for m, _ in methods} <= {"GET", "POST"}
    assert [p for m, p in methods if m == "POST"] == ["/v3/auth/tokens"]
    assert any(p.endswith(f"/jobs/{UNKNOWN_JOB_ID}") for _, p in methods)


def test_aksk_signs_an_iam_call_instead_of_logging_in() -> None:
    domain = {
        "name": "demo",
        "users": [{"name": "alice", "password": "unused-Passw0rd"}],
        "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
        "access_keys": [{"ak": AK, "sk": SK, "project": "eu-de", "user": "alice"}],
    }
    cloud = make_cloud(domains=[domain])
    network = CloudNetwork(cloud)
    results = check(cloud, network, domain=None, username=None, password=None, access_key=AK, secret_key=SK)
    assert all(r.ok for r in results.values()), statuses(results)
    assert "AK/SK" in results["settings"].detail
    assert SK not in results["settings"].detail
    assert "AK/SK signature accepted" in results["token"].detail
    assert "IAM project named eu-de" in results["project"].detail
    assert not network.calls_to("POST", "/v3/auth/tokens")


def test_a_server_error_fails_that_check_only_and_carries_the_request_id() -> None:
    cloud = make_cloud()
    cloud.faults.add(FaultRuleSeed.model_validate({"kind": "server_error", "operation": "ims.show_quota"}))
    network = Recording(cloud)
    results = check(cloud, network)
    quota = results["ims-quota"]
    assert quota.status is CheckStatus.failed
    assert "HTTP 500" in quota.detail
    assert "/v1/cloudimages/quota" in quota.detail
    assert quota.hint
    sent = network.headers_of("/v1/cloudimages/quota").get("X-Request-Id")
    # The local cloud sends X-Request-Id on every answer (once that change is in); the check reports it.
    assert quota.request_id == sent
    others = {name: r for name, r in results.items() if name != "ims-quota"}
    assert all(r.ok for r in others.values()), statuses(results)


def test_a_gateway_throttle_carries_the_request_id_of_its_body() -> None:
    cloud = make_cloud()
    cloud.faults.add(FaultRuleSeed.model_validate({"kind": "apig_throttle", "operation": "ecs.list_servers"}))
    results = check(cloud)
    ecs = results["ecs-list"]
    assert ecs.status is CheckStatus.failed
    assert "APIG.0308" in ecs.detail
    assert ecs.request_id
    assert len(ecs.request_id) == 32


def test_a_wrong_password_fails_the_token_check_and_skips_what_needs_it() -> None:
    results = check(make_cloud(), password="wrong-Passw0rd")
    assert statuses(results) == {
        "settings": "ok",
        "dns": "ok",
        "tls": "ok",
        "token": "failed",
        "project": "skipped",
        "ecs-list": "skipped",
        "ims-list": "skipped",
        "ims-quota": "skipped",
        "ims-job": "skipped",
    }
    token = results["token"]
    assert "HTTP 401 IAM.0062" in token.detail
    assert token.hint
    assert "password" in token.hint
    assert "wrong-Passw0rd" not in token.detail
    assert results["project"].detail == "skipped: needs the token check"


def test_missing_credentials_fail_the_settings_check_with_a_hint() -> None:
    results = check(make_cloud(), profile="otc", password=None)
    assert results["settings"].status is CheckStatus.failed
    assert "missing IMSFLOW_PASSWORD" in results["settings"].detail
    assert results["settings"].hint
    assert "IMSFLOW_PASSWORD" in results["settings"].hint
    assert results["token"].status is CheckStatus.skipped


def test_half_an_aksk_pair_fails_the_settings_check() -> None:
    results = check(make_cloud(), access_key=AK)
    assert results["settings"].status is CheckStatus.failed
    assert "IMSFLOW_SECRET_KEY is not" in results["settings"].detail


def test_an_endpoint_that_is_not_a_url_skips_everything_else() -> None:
    results = check(make_cloud(), ecs_url="ecs.example.com")
    assert results["settings"].status is CheckStatus.failed
    assert "not an http(s) URL" in results["settings"].detail
    assert {r.status for name, r in results.items() if name != "settings"} == {CheckStatus.skipped}


def test_an_unresolvable_host_fails_dns_quickly_and_skips_its_service() -> None:
    started = time.monotonic()
    results = check(make_cloud(), ims_url="https://ims.invalid")
    assert time.monotonic() - started < 10
    dns = results["dns"]
    assert dns.status is CheckStatus.failed
    assert "ims.invalid" in dns.detail
    assert dns.hint
    assert "ims.invalid: not checked" in results["tls"].detail
    # IAM and ECS are on another host: their checks still run.
    for name in ("token", "project", "ecs-list"):
        assert results[name].ok, statuses(results)
    for name in ("ims-list", "ims-quota", "ims-job"):
        assert results[name].status is CheckStatus.skipped
        assert "ims.invalid failed the dns check" in results[name].detail


def test_plain_http_to_a_remote_host_fails_unless_allowed() -> None:
    remote = "http://192.0.2.10:8780"  # TEST-NET-1: an address literal, so no DNS is involved
    refused = check(make_cloud(), ims_url=remote)
    assert refused["tls"].status is CheckStatus.failed
    assert "plain http to a remote host" in refused["tls"].detail
    assert refused["tls"].hint
    assert "IMSFLOW_ALLOW_INSECURE" in refused["tls"].hint
    assert refused["ims-quota"].status is CheckStatus.skipped

    allowed = check(make_cloud(), ims_url=remote, allow_insecure=True)
    assert allowed["tls"].ok
    assert "IMSFLOW_ALLOW_INSECURE=true" in allowed["tls"].detail


def test_a_missing_job_api_fails_the_job_check_naming_the_path() -> None:
    cloud = make_cloud()
    fault = {
        "kind": "server_error",
        "method": "GET",
        "path": "*/jobs/*",
        "status": 404,
        "error_code": "APIG.0101",
    }
    cloud.faults.add(
        FaultRuleSeed.model_validate(
            {**fault, "message": "The API does not exist or has not been published in the environment"}
        )
    )
    results = check(cloud)
    job = results["ims-job"]
    assert job.status is CheckStatus.failed
    assert "GET /v1/{project_id}/jobs/{job_id}" in job.detail
    assert "APIG.0101" in job.detail
    assert job.hint
    assert "/v1/cloudimages/job/{job_id}" in job.hint


def test_a_used_up_quota_fails_before_a_real_run_would() -> None:
    results = check(make_cloud(limits={"image_quota": 0}))
    assert results["ims-quota"].status is CheckStatus.failed
    assert "0/0 private images" in results["ims-quota"].detail


# ---------------------------------------------------------------------------------------------------- TLS


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@asynccontextmanager
async def tls_server(directory: Path) -> AsyncIterator[int]:
    """A TLS listener on 127.0.0.1 with a self-signed certificate for ``localhost``; yields its port."""
    cert, key = _self_signed(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("verify", [True, False])
def test_tls_handshake_verifies_the_certificate_as_the_client_would(tmp_path: Path, verify: bool) -> None:
    async def scenario() -> list[CheckResult]:
        async with tls_server(tmp_path) as port:
            url = f"https://localhost:{port}"
            settings = settings_for(iam_url=url, ecs_url=url, ims_url=url, verify_tls=verify)
            return await run_checks(
                settings, transport=httpx.MockTransport(lambda r: httpx.Response(500)), timeout=5
            )

    results = {r.name: r for r in asyncio.run(scenario())}
    tls = results["tls"]
    if verify:
        assert tls.status is CheckStatus.failed, tls
        assert "certificate not trusted" in tls.detail
        assert tls.hint
        assert "IMSFLOW_VERIFY_TLS" in tls.hint
        assert results["token"].status is CheckStatus.skipped
    else:
        assert tls.ok, tls
        assert "TLSv1" in tls.detail
        assert "NOT verified" in tls.detail
        # The handshake passed; the mock cloud behind it answers 500, which the token check reports.
        assert results["token"].status is CheckStatus.failed


@pytest.mark.skipif(
    "ims_job_api" not in ImsflowSettings.model_fields, reason="settings without the ims_job_api choice"
)
@pytest.mark.parametrize(
    ("api", "path"),
    [("cloudimages-job", "/v1/cloudimages/job/{job_id}"), ("project-jobs", "/v1/{project_id}/jobs/{job_id}")],
)
def test_the_job_check_names_the_configured_job_api(api: str, path: str) -> None:
    results = check(make_cloud(), ims_url=f"{BASE_URL}/ims", ims_job_api=api)
    job = results["ims-job"]
    assert job.ok, job
    assert job.detail.startswith(f"GET {path} (ims_job_api {api}, IMSFLOW_IMS_JOB_API) answers")


def test_one_tls_context_per_process_and_a_new_ca_file_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All clients (each task builds one) share one context; a CA set later by SSL_CERT_FILE still counts."""
    import certifi

    built: list[bool] = []
    create = httpx.create_ssl_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(True)
        return create(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counted)
    bundle = tmp_path / "bundle.pem"  # the usual CAs, at a path (a cache key) no other test uses
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    clients = [CloudClient(settings_for(verify_tls=True)) for _ in range(3)]
    assert len(built) == 1, "one context for every client"
    assert ssl_context(True) is ssl_context(True)
    assert ssl_context(True).verify_mode is ssl.CERT_REQUIRED
    assert ssl_context(True).check_hostname
    assert ssl_context(False).verify_mode is ssl.CERT_NONE

    async def handshake(port: int, context: ssl.SSLContext) -> None:
        _, writer = await asyncio.open_connection("localhost", port, ssl=context)
        writer.close()

    async def scenario() -> None:
        async with tls_server(tmp_path) as port:
            with pytest.raises(ssl.SSLCertVerificationError):
                await handshake(port, ssl_context(True))
            monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))  # the listener's certificate
            await handshake(port, ssl_context(True))  # trusted now: a new context, not the cached one

    asyncio.run(scenario())
    assert len(built) == 3  # verify=False, then the new CA file
    del clients


def test_an_untrusted_certificate_is_one_named_error_with_what_to_do_not_retried(tmp_path: Path) -> None:
    """No request went out and another try cannot help: the tasks must not spend their backoff on it."""

    async def scenario() -> TlsVerificationError:
        async with tls_server(tmp_path) as port:
            url = f"https://localhost:{port}"
            settings = settings_for(iam_url=url, ecs_url=url, ims_url=url, verify_tls=True)
            async with CloudClient(settings) as client:
                with pytest.raises(TlsVerificationError) as raised:
                    await client.iam.list_projects()
                return raised.value

    error = asyncio.run(scenario())
    assert str(error).startswith("GET failed: certificate not trusted: self-signed certificate (https://")
    assert error.retryable is False
    assert "SSL_CERT_FILE" in error.hint
    assert "IMSFLOW_VERIFY_TLS" in error.hint
