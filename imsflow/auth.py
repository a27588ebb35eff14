"""Authentication as ``httpx.Auth`` flows: IAM token and AK/SK request signing.

This module is the only place where secrets are unwrapped (``get_secret_value()``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import httpx
from pydantic import SecretStr

from imsflow.models import IamToken, TokenRequest
from imsflow.redact import register_secret

__all__ = [
    "ALGORITHM",
    "AkSkAuth",
    "TokenAuth",
    "canonical_request",
    "sign_string",
    "string_to_sign",
    "token_request_body",
]

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# Signed when present. The docs require only x-sdk-date; the SDK signs every header it sends, but
# httpx adds transport headers (accept-encoding, connection, user-agent) that proxies may rewrite,
# so we sign the headers that matter and nothing a middlebox could change.
SIGNED_HEADER_NAMES = (
    "content-type",
    "host",
    "x-domain-id",
    "x-project-id",
    "x-sdk-date",
    "x-security-token",
)

Refresh = Callable[[], Awaitable[IamToken]]


def token_request_body(request: TokenRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v3/auth/tokens`` with the real password (never log it)."""
    body = request.to_body()
    password = request.auth.identity.password.user.password.get_secret_value()
    register_secret(password)
    body["auth"]["identity"]["password"]["user"]["password"] = password
    return body


class TokenAuth(httpx.Auth):
    """Send ``X-Auth-Token``; on a 401 refresh the token once and resend.

    A second 401 is returned as it is, so a bad account cannot cause a retry storm. Concurrent requests
    that all see a 401 share one refresh.
    """

    def __init__(
        self, token: IamToken, *, refresh: Refresh | None = None, refresh_margin: float = 60
    ) -> None:
        self._token = token
        register_secret(token.value.get_secret_value())
        self._refresh = refresh
        self._refresh_margin = refresh_margin
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def token(self) -> IamToken:
        return self._token

    def __repr__(self) -> str:
        token = self._token
        return f"TokenAuth(project_id={token.project_id!r}, expires_at={token.expires_at.isoformat()})"

    async def _renew(self, stale: IamToken) -> IamToken:
        assert self._refresh is not None
        loop = asyncio.get_running_loop()
        # A lock belongs to one event loop; Prefect may run our tasks in different loops.
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            # Another request may have refreshed while we waited for the lock.
            if self._token is stale:
                self._token = await self._refresh()
                register_secret(self._token.value.get_secret_value())
            return self._token

    def _apply(self, request: httpx.Request, token: IamToken) -> None:
        request.headers["X-Auth-Token"] = token.value.get_secret_value()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # The refresh callable is async; a sync client gets the token without refresh.
        self._apply(request, self._token)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._token
        if self._refresh is not None and token.expires_within(self._refresh_margin):
            token = await self._renew(token)
        self._apply(request, token)
        response = yield request
        if response.status_code == 401 and self._refresh is not None:
            token = await self._renew(token)
            self._apply(request, token)
            yield request


def _encode(text: str) -> str:
    # RFC 3986 unreserved characters stay as they are; everything else is percent-encoded.
    return quote(text, safe="~")


def _canonical_uri(request: httpx.Request) -> str:
    segments = unquote(request.url.raw_path.split(b"?", 1)[0].decode("ascii")).split("/")
    uri = "/".join(_encode(segment) for segment in segments)
    return uri if uri.endswith("/") else uri + "/"


def _canonical_query(request: httpx.Request) -> str:
    pairs = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, value in sorted(pairs))


def _signed_headers(request: httpx.Request) -> list[str]:
    return sorted(name for name in SIGNED_HEADER_NAMES if name in request.headers)


def canonical_request(request: httpx.Request, signed_headers: list[str]) -> str:
    """The canonical request of the SDK-HMAC-SHA256 algorithm (contract section 2.3)."""
    headers = "".join(f"{name}:{request.headers[name].strip()}\n" for name in signed_headers)
    return "\n".join(
        [
            request.method.upper(),
            _canonical_uri(request),
            _canonical_query(request),
            headers,
            ";".join(signed_headers),
            hashlib.sha256(request.content).hexdigest(),
        ]
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def sign_string(secret_key: SecretStr, text: str) -> str:
    """Lowercase hex HMAC-SHA256 with the SK as key (no key derivation, unlike AWS SigV4)."""
    key = secret_key.get_secret_value().encode("utf-8")
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


class AkSkAuth(httpx.Auth):
    """Sign every request with an AK/SK pair (``SDK-HMAC-SHA256``)."""

    requires_request_body = True

    def __init__(
        self,
        access_key: str,
        secret_key: SecretStr,
        *,
        project_id: str | None = None,
        domain_id: str | None = None,
        security_token: SecretStr | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.access_key = access_key
        self._secret_key = secret_key
        self.project_id = project_id
        self.domain_id = domain_id
        self._security_token = security_token
        self._clock = clock
        register_secret(secret_key.get_secret_value())
        if security_token is not None:
            register_secret(security_token.get_secret_value())

    def __repr__(self) -> str:
        return f"AkSkAuth(access_key={self.access_key!r}, project_id={self.project_id!r})"

    def sign(self, request: httpx.Request) -> None:
        """Add X-Sdk-Date (and the project/token headers) and the Authorization header."""
        sdk_date = self._clock().astimezone(UTC).strftime(SDK_DATE_FORMAT)
        request.headers["X-Sdk-Date"] = sdk_date
        if self.project_id and "X-Project-Id" not in request.headers:
            request.headers["X-Project-Id"] = self.project_id
        if self.domain_id and "X-Domain-Id" not in request.headers:
            request.headers["X-Domain-Id"] = self.domain_id
        if self._security_token is not None:
            request.headers["X-Security-Token"] = self._security_token.get_secret_value()
        signed = _signed_headers(request)
        signature = sign_string(
            self._secret_key, string_to_sign(canonical_request(request, signed), sdk_date)
        )
        request.headers["Authorization"] = (
            f"{ALGORITHM} Access={self.access_key}, SignedHeaders={';'.join(signed)}, Signature={signature}"
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request
