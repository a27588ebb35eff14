"""The error tree: every documented code maps to a named class; bodies of every shape are understood."""

from __future__ import annotations

import json
import pickle
from typing import Any

import httpx
import pytest

from imsflow import errors
from imsflow.errors import (
    ERROR_CODES,
    AccountLockedError,
    ApiError,
    AuthenticationError,
    EcsBusyError,
    EcsNotFoundError,
    EcsNotStoppedError,
    ImageBeingCreatedError,
    ImageNotFoundError,
    ImageProtectedError,
    ImsflowError,
    InvalidCredentialsError,
    InvalidParameterError,
    InvalidRequestError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ServerError,
    ThrottledError,
    TokenExpiredError,
    TokenInvalidError,
    TransportError,
    error_for,
    parse_error_response,
)

from .conftest import load

DOCUMENTED = load("error_codes.json")
URL = "https://ims.eu-de.otc.t-systems.com/v2/cloudimages/action"


def response(status: int, body: Any = None, *, text: str | None = None, **headers: str) -> httpx.Response:
    request = httpx.Request("POST", URL)
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_the_code_list_covers_the_pages() -> None:
    codes = {entry["code"] for entry in DOCUMENTED}
    assert len([c for c in codes if c.startswith("IMG.")]) == 177
    assert {"Ecs.0114", "Common.0024", "Common.1503", "IAM.0012", "APIG.0308"} <= codes


@pytest.mark.parametrize("entry", DOCUMENTED, ids=lambda e: e["code"])
def test_every_documented_code_maps_to_a_named_class(entry: dict[str, Any]) -> None:
    cls = ERROR_CODES[entry["code"]]
    assert cls is not ApiError
    error = error_for(entry["status"], entry["code"], entry["message"], URL)
    assert type(error) is cls
    assert entry["code"] in str(error)
    assert URL in str(error)


def test_registry_has_no_undocumented_codes() -> None:
    assert set(ERROR_CODES) == {entry["code"] for entry in DOCUMENTED}


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("IMG.0005", EcsNotFoundError),
        ("IMG.0008", EcsNotStoppedError),
        ("IMG.0010", EcsBusyError),
        ("IMG.0015", QuotaExceededError),
        ("IMG.0116", QuotaExceededError),
        ("IMG.0026", PermissionDeniedError),
        ("IMG.0027", ImageNotFoundError),
        ("IMG.0028", ImageProtectedError),
        ("IMG.0060", ThrottledError),
        ("IMG.0090", ImageBeingCreatedError),
        ("IMG.0003", InvalidParameterError),
        ("IMG.0115", InvalidParameterError),
        ("IMG.0014", ServerError),
        ("Ecs.0114", EcsNotFoundError),
        ("Ecs.0614", EcsNotFoundError),
        ("Common.0011", JobNotFoundError),
        ("Common.0024", ThrottledError),
        ("Common.1503", ThrottledError),
        ("IAM.0061", AccountLockedError),
        ("IAM.0062", InvalidCredentialsError),
        ("IAM.0066", TokenExpiredError),
        ("IAM.0067", TokenInvalidError),
        ("IAM.0081", PermissionDeniedError),
        ("IAM.0012", ThrottledError),
        ("APIG.0301", AuthenticationError),
        ("APIG.0308", ThrottledError),
    ],
)
def test_codes_the_flow_meets(code: str, cls: type[ApiError]) -> None:
    assert ERROR_CODES[code] is cls


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (ThrottledError, True),
        (ServerError, True),
        (ApiError, False),
        (EcsNotStoppedError, False),
        (QuotaExceededError, False),
        (AuthenticationError, False),
        (InvalidParameterError, False),
    ],
)
def test_retryable_flags(cls: type[ApiError], retryable: bool) -> None:
    assert cls.retryable is retryable


def test_transport_error_is_retryable_and_names_the_url() -> None:
    error = TransportError("connect failed", url=URL)
    assert error.retryable is True
    assert URL in str(error)
    assert error.url == URL


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidParameterError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, ThrottledError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (418, ApiError),
    ],
)
def test_unknown_code_falls_back_to_status(status: int, cls: type[ApiError]) -> None:
    assert type(error_for(status, "XYZ.9999", "m", URL)) is cls
    assert type(error_for(status, None, "m", URL)) is cls


def test_ims_body_from_the_page() -> None:
    error = parse_error_response(response(400, load("ims_error_codes.response.json")))
    assert error.code == "IMG.0024"
    assert error.message == "The imagetype is invalid."
    assert error.status == 400
    assert error.url == URL
    assert str(error) == f"HTTP 400 IMG.0024: The imagetype is invalid. ({URL})"


def test_ecs_body_with_details() -> None:
    body = {"error": {"code": "Ecs.0114", "message": "The ECS does not exist.", "details": []}}
    error = parse_error_response(response(404, body))
    assert isinstance(error, EcsNotFoundError)


@pytest.mark.parametrize(
    ("message", "cls", "code"),
    [
        ("The request you have made requires authentication.", AuthenticationError, "IAM.0001"),
        ("Incorrect password.", InvalidCredentialsError, "IAM.0062"),
        ("Account locked.", AccountLockedError, "IAM.0061"),
        ("The token has expired.", TokenExpiredError, "IAM.0066"),
        ("Could not find project: 42.", NotFoundError, "IAM.0004"),
        ("Something else entirely.", AuthenticationError, None),
    ],
)
def test_keystone_body_maps_messages_to_iam_codes(
    message: str, cls: type[ApiError], code: str | None
) -> None:
    status = 404 if code == "IAM.0004" else 401
    body = {"error": {"code": status, "message": message, "title": "Unauthorized"}}
    error = parse_error_response(response(status, body))
    assert type(error) is cls
    assert error.code == code
    assert error.message == message


def test_iam_throttling_keystone_body_with_retry_after() -> None:
    body = {
        "error": {
            "code": 429,
            "message": "The throttling threshold has been reached. Threshold: 10 times per 1 seconds",
            "title": "Too Many Requests",
        }
    }
    error = parse_error_response(response(429, body, **{"Retry-After": "3"}))
    assert isinstance(error, ThrottledError)
    assert error.code == "IAM.0012"
    assert error.retry_after == 3.0


@pytest.mark.parametrize(
    "name",
    [
        "apig_app_authentication_incorrect.response.app_not_found.json",
        "apig_app_authentication_incorrect.response.signature_expired.json",
    ],
)
def test_gateway_body_from_the_page(name: str) -> None:
    body = load(name)
    error = parse_error_response(response(401, body))
    assert isinstance(error, AuthenticationError)
    assert error.code == "APIG.0303"
    assert error.request_id == body["request_id"]
    assert body["request_id"] in str(error)


def test_gateway_throttling() -> None:
    body = {
        "error_msg": "The throttling threshold has been reached: "
        "policy user over ratelimit,limit:10,time:1 second",
        "error_code": "APIG.0308",
        "request_id": "abc",
    }
    error = parse_error_response(response(429, body))
    assert isinstance(error, ThrottledError)
    assert error.retryable


def test_common_0024_on_202_is_throttling() -> None:
    body = {"error": {"code": "Common.0024", "message": "Flow limit exceeded."}}
    error = parse_error_response(response(202, body))
    assert isinstance(error, ThrottledError)
    assert error.status == 202


def test_non_json_bodies() -> None:
    error = parse_error_response(response(502, text="<html><body>\n<h1>Bad Gateway</h1>\n</body></html>"))
    assert isinstance(error, ServerError)
    assert "\n" not in str(error)
    assert error.code is None
    empty = parse_error_response(response(503, text=""))
    assert isinstance(empty, ServerError)
    assert empty.message == "Service Unavailable"


def test_request_id_from_header() -> None:
    body = {"error": {"code": "IMG.0027", "message": "The image ID in the request does not exist."}}
    error = parse_error_response(response(400, body, **{"X-Request-Id": "req-1"}))
    assert isinstance(error, ImageNotFoundError)
    assert error.request_id == "req-1"


def test_every_error_has_a_hint_and_a_one_line_message() -> None:
    for cls in {*ERROR_CODES.values(), ApiError}:
        error = cls(status=400, code="X", message="two\nlines", url=URL)
        assert error.hint
        assert "\n" not in str(error)


def test_job_errors() -> None:
    failed = JobFailedError(job_id="j1", error_code="IMG.0008", fail_reason="not stopped")
    assert "j1" in str(failed)
    assert "IMG.0008" in str(failed)
    assert "not stopped" in str(failed)
    assert not isinstance(failed, ApiError)
    timeout = JobTimeoutError(job_id="j2", last_status="RUNNING", waited_seconds=1800.4)
    assert str(timeout) == "job j2 still RUNNING after 1800 s"
    assert timeout.waited_seconds == 1800.4


def test_invalid_request_error_names_field_and_rule() -> None:
    error = InvalidRequestError("name", " x", "must not start with a space")
    assert error.field == "name"
    assert "name" in str(error)
    assert "must not start with a space" in str(error)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    "error",
    [
        error_for(400, "IMG.0008", "The ECS cannot be used ...", URL, request_id="r", retry_after=2.0),
        TransportError("boom", url=URL),
        errors.TlsVerificationError("GET failed: certificate not trusted: self-signed certificate", url=URL),
        JobFailedError(job_id="j", error_code=None, fail_reason=None),
        JobTimeoutError(job_id="j", last_status=None, waited_seconds=1.0),
        InvalidRequestError("name", "x", "rule"),
        errors.ConfigError("bad", hint="fix it"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling(error: ImsflowError) -> None:
    # Prefect pickles task exceptions; keyword-only constructors must not break that.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.hint == error.hint
    assert json.dumps(vars(copy), default=str)


def test_ecs_not_ready_is_a_client_side_error() -> None:
    error = errors.EcsNotReadyError("web-1 is ACTIVE", hint="stop it first")
    assert not isinstance(error, ApiError)
    assert error.hint == "stop it first"
    assert str(error) == "web-1 is ACTIVE"
