"""AK/SK request signatures (``SDK-HMAC-SHA256``), verified the way the API gateway does.

Written from contract §2.3 (the Huawei signing guide): CanonicalRequest = METHOD, CanonicalURI (every path
segment percent-encoded, always ending in ``/``), CanonicalQueryString (sorted, encoded), CanonicalHeaders
(``name:value\\n`` per signed header), SignedHeaders, hex SHA-256 of the body; StringToSign =
``SDK-HMAC-SHA256\\n{X-Sdk-Date}\\n{hex SHA-256 of the canonical request}``; Signature = hex HMAC-SHA256 with
the SK as key (no key derivation).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from localcloud.clock import fmt_sdk_date
from localcloud.errors import CloudError, gateway_error
from localcloud.iam.state import Caller, Iam

ALGORITHM = "SDK-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_AUTH_RE = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)


def _encode(text: str) -> str:
    # RFC 3986 unreserved characters stay, everything else is percent-encoded.
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    uri = "/".join(_encode(unquote(segment)) for segment in path.split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    block = "".join(f"{name}:{lower.get(name, '').strip()}\n" for name in signed_headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            block,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(sdk_date: str, canonical: str) -> str:
    return f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(sk: str, to_sign: str) -> str:
    return hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    ak: str,
    sk: str,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes = b"",
    when: datetime | None = None,
) -> dict[str, str]:
    """Headers to add to a request (``X-Sdk-Date`` and ``Authorization``); all given headers are signed.

    A reference signer for tests and demos: ``headers`` must already hold ``Host``.
    """
    sdk_date = headers.get("X-Sdk-Date") or fmt_sdk_date(when or datetime.now(UTC))
    all_headers = {**dict(headers), "X-Sdk-Date": sdk_date}
    signed = sorted(k.lower() for k in all_headers)
    canonical = canonical_request(method, path, query, all_headers, signed, hashlib.sha256(body).hexdigest())
    sig = signature(sk, string_to_sign(sdk_date, canonical))
    return {
        "X-Sdk-Date": sdk_date,
        "Authorization": f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed)}, Signature={sig}",
    }


def _fail(detail: str) -> CloudError:
    # Contract §2.3 [HC]: APIG.0301 "Incorrect IAM authentication information: ..."; [inference] HTTP 401.
    return gateway_error("APIG.0301", f"Incorrect IAM authentication information: {detail}", 401)


def verify_request(
    iam: Iam,
    *,
    now: datetime,
    max_skew_seconds: float,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> Caller:
    """Check an ``SDK-HMAC-SHA256`` request; return the caller or raise the gateway's 401.

    ``path`` is the raw (still percent-encoded) path; ``headers`` look up case-insensitively.
    """
    match = _AUTH_RE.match(headers.get("authorization", ""))
    if match is None:
        raise _fail("verify aksk signature fail")
    ak, signed_text, given = match["ak"], match["signed"], match["sig"].lower()
    signed = signed_text.split(";")
    if "x-sdk-date" not in signed:
        raise _fail("verify aksk signature fail")
    sdk_date = headers.get("x-sdk-date", "")
    try:
        when = datetime.strptime(sdk_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _fail("verify aksk signature fail") from None
    if abs((now - when).total_seconds()) > max_skew_seconds:
        raise _fail(f"signature expired, signature time:{sdk_date},server time:{fmt_sdk_date(now)}")
    key = iam.access_keys.get(ak)
    if key is None:
        raise _fail(f"ak {ak} not found")
    if key.security_token is not None and headers.get("x-security-token") != key.security_token:
        raise _fail("verify security token fail")

    if headers.get("x-sdk-content-sha256") == UNSIGNED_PAYLOAD:
        payload_hash = UNSIGNED_PAYLOAD
    else:
        payload_hash = hashlib.sha256(body).hexdigest()
    canonical = canonical_request(method, path, query, headers, signed, payload_hash)
    expected = signature(key.sk, string_to_sign(sdk_date, canonical))
    if not hmac.compare_digest(expected, given):
        raise _fail("verify aksk signature fail")

    project_id = key.project_id
    wanted = headers.get("x-project-id")
    if wanted:
        project = iam.projects.get(wanted)
        if project is None or project.domain_id != key.domain_id:
            raise _fail("verify aksk signature fail")  # [inference] a project outside the AK's account
        project_id = project.id
    return Caller(key.user_id, key.domain_id, project_id, access_key=ak)
