"""What every API request goes through before and after its operation: the local API gateway.

Pipeline (:func:`answer`): count the call, request-rate limit, fault rules, authentication (token or AK/SK),
``Content-Type``, the operation itself (under the cloud's lock), then any commit-then-fail fault. The
operations live in each service's ``wire.py`` (reading the request, calling the state, writing the body);
the routes that reach them are declared there too and registered by ``app.py``.

Every answer carries ``X-Request-Id`` (32 hex, fresh per request; set once, in the outermost ASGI layer);
gateway bodies carry the same value in ``request_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from localcloud.clock import Clock
from localcloud.errors import (
    CURRENT_REQUEST_ID,
    CloudError,
    ecs_error,
    gateway_error,
    iam_error,
    ims_error,
    new_request_id,
)
from localcloud.faults import ConnectionDropped, FaultEngine, FaultRule, JobFault
from localcloud.iam.state import AuthFailure, AuthReason, Caller, Iam
from localcloud.seed import Seed
from localcloud.signing import verify_request

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from localcloud.ecs.state import Ecs
    from localcloud.ims.state import Ims

Service = Literal["iam", "ecs", "ims"]
RAW_SEND = "localcloud.raw_send"
REQUEST_ID = "localcloud.request_id"


class Cloud(Protocol):
    """What the HTTP side uses of a :class:`~localcloud.cloud.LocalCloud` (so it never imports cloud.py)."""

    @property
    def seed(self) -> Seed: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def lock(self) -> AbstractContextManager[Any]: ...
    @property
    def faults(self) -> FaultEngine: ...
    @property
    def iam(self) -> Iam: ...
    @property
    def ecs(self) -> Ecs: ...
    @property
    def ims(self) -> Ims: ...
    @property
    def obs(self) -> dict[str, dict[str, dict[str, Any]]]: ...
    def count(self, name: str) -> None: ...
    def check_rate(self) -> CloudError | None: ...
    def stats(self) -> dict[str, int]: ...
    def reset(self) -> None: ...


@dataclass
class Call:
    """One API request as an operation sees it: what it reads, the caller, and any job fault to apply."""

    query: dict[str, str]  # repeated parameters: the last value wins
    headers: Mapping[str, str]  # case-insensitive (Starlette's headers)
    raw: bytes
    base_url: str  # e.g. "http://127.0.0.1:8780", no trailing slash
    caller: Caller | None = None
    job_fault: JobFault = field(default_factory=JobFault)

    @property
    def project_id(self) -> str:
        # Only read after authentication, which guarantees a project-scoped caller for IMS and ECS.
        assert self.caller is not None
        assert self.caller.project_id is not None
        return self.caller.project_id


@dataclass(frozen=True)
class Reply:
    """An operation's answer: a JSON body (None: no body), the status and extra headers."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] | None = None

    def response(self) -> Response:
        if self.body is None:
            return Response(status_code=self.status, headers=self.headers)
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


#: An operation: ``handler(<the service's state>, call, **path parameters) -> Reply``.
Handler = Callable[..., Reply]


@dataclass(frozen=True)
class Route:
    """One row of a service's routing table.

    ``operation`` is the stats name, or a function of the raw body when the body decides it (ECS actions).
    ``shared``: served bare too (the real API path on one base URL), not only under ``/{service}``.
    """

    service: Service
    method: str
    path: str
    operation: str | Callable[[bytes], str]
    handler: Handler
    auth: bool = True
    shared: bool = True


def error_response(err: CloudError, method: str = "GET") -> Response:
    if err.body is None or method == "HEAD":
        return Response(status_code=err.status, headers=err.headers)
    return JSONResponse(err.body, status_code=err.status, headers=err.headers)


def auth_error(service: Service, reason: AuthReason) -> CloudError:
    """401 for a missing, unknown, revoked or expired token, in the body each service documents.

    ECS: ``Common.0013`` "Invalid token." (contract §4.6). IMS: [inference] no 401 body is documented;
    we use ``IMG.0087`` "The token is incorrect." with HTTP 401 (the returned-values table gives 401 for
    authentication failures). For an expired token both say "The token must be updated.", the phrase the
    IAM token page says cloud services answer with.
    """
    expired = reason == "expired"
    if service == "ecs":
        return ecs_error("Common.0013", "The token must be updated." if expired else None, status=401)
    if service == "ims":
        return ims_error("IMG.0087", "The token must be updated." if expired else None, status=401)
    return iam_error({"missing": "IAM.0001", "invalid": "IAM.0067", "expired": "IAM.0066"}[reason])


def fault_error(service: Service, rule: FaultRule) -> CloudError:
    """The answer of a responding fault, with the status and body the pages document for it."""
    s = rule.spec
    retry = {"Retry-After": f"{s.retry_after:g}"} if s.retry_after is not None else {}
    if s.kind == "ims_flow_control":
        return ims_error("IMG.0060", s.message)
    if s.kind == "ecs_flow_limit":
        # Contract §4.6: Common.0024 "Flow limit exceeded." comes with HTTP 202. The action is not applied.
        return ecs_error("Common.0024", s.message, status=202)
    if s.kind == "apig_throttle":
        msg = (
            s.message
            or "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 second"
        )
        return gateway_error("APIG.0308", msg, 429, retry)
    if s.kind == "throttle_429":
        retry = retry or {"Retry-After": "1"}
        if service == "ecs":
            err = ecs_error(
                "Common.1503",
                s.message or "Api flow control Error because the request rate is too high.",
                status=429,
            )
        elif service == "iam":
            err = iam_error(
                "IAM.0012",
                s.message or "The throttling threshold has been reached. Threshold: 10 times per 1 seconds",
            )
        else:
            # [inference] IMS documents no 429; a 429 in front of IMS comes from the gateway.
            err = gateway_error(
                "APIG.0308",
                s.message
                or "The throttling threshold has been reached: policy user "
                "over ratelimit,limit:10,time:1 second",
                429,
            )
        err.headers.update(retry)
        return err
    # server_error and commit_then_fail (status 5xx).
    return server_error(service, s.status or 500, s.error_code, s.message, retry)


def server_error(
    service: Service,
    status: int,
    code: str | None,
    message: str | None,
    headers: dict[str, str] | None = None,
) -> CloudError:
    """A 5xx. [inference] The pages give no 5xx bodies; we keep each service's error shape."""
    if service == "ims":
        err = ims_error(code or "IMG.0061", message, status=status)
    elif service == "ecs":
        err = ecs_error(code or "Common.0500", message or "Internal server error.", status=status)
    else:
        err = iam_error(code or "IAM.0000", message or "Internal server error.", status=status)
    err.headers.update(headers or {})
    return err


def _transport_of(send: Any) -> Any:
    """The asyncio transport behind uvicorn's ``send`` (a bound method of its request cycle), if any."""
    owner = getattr(send, "__self__", None)
    return getattr(owner, "transport", None)


def drop_connection(request: Request) -> Response:
    """Hang up without answering: abort the socket under uvicorn, else raise :class:`ConnectionDropped`."""
    transport = _transport_of(request.scope.get(RAW_SEND))
    if transport is None:
        raise ConnectionDropped()
    transport.abort()
    # Whatever is written now goes to a closed transport and is discarded.
    return Response(status_code=500)


class Outermost:
    """Outermost ASGI layer, for every HTTP request (all services and ``/_local``).

    - remembers the server's own ``send`` so a fault can abort the connection;
    - gives the request a fresh id (32 hex) and sends it as ``X-Request-Id`` on every answer, success or
      error; while the request runs, :func:`localcloud.errors.request_id` returns the same id, so a gateway
      body's ``request_id`` equals the header. [inference] The pages name no request-id header; the
      gateway bodies carry ``request_id`` and the client reads ``X-Request-Id``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id()
        scope[RAW_SEND] = send
        scope[REQUEST_ID] = rid
        header = (b"x-request-id", rid.encode("ascii"))

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = CURRENT_REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CURRENT_REQUEST_ID.reset(token)


def service_of_path(path: str) -> Service | None:
    """Which service a path belongs to (prefix, else the shape of the real API path); None for others.

    [inference] The bare job path ``/v1/{project_id}/jobs/...`` counts as ECS here (an unrouted request
    on it has no job id to tell by).
    """
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] in ("iam", "ecs", "ims"):
        return parts[0]  # type: ignore[return-value]
    if parts[0] == "v3":
        return "iam"
    if parts[0] == "v2":
        return "ims"
    if parts[0] == "v1" and len(parts) > 1:
        return "ims" if parts[1] == "cloudimages" else "ecs"
    return None


def bad_request(service: Service) -> CloudError:
    """A request the service cannot read (malformed parameters, wrong body type), in its error shape.

    [inference] The pages give no code for these; we use each service's generic "bad request" code:
    IMS ``IMG.0001`` "The request message format is invalid.", ECS ``Ecs.0005``, IAM ``IAM.0011``.
    """
    if service == "ims":
        return ims_error("IMG.0001")
    if service == "ecs":
        return ecs_error("Ecs.0005")
    return iam_error("IAM.0011")


def check_content_type(service: Service, headers: Mapping[str, str], raw: bytes) -> None:
    """A request with a body must say ``Content-Type: application/json`` (parameters such as charset ok).

    The pages: Content-Type is mandatory when a request has a body, and the APIs take JSON
    (common/api-usage overview_of_rest_apis.rst; IAM pages: "application/json;charset=utf8").
    [inference] The answer to a missing or other Content-Type is :func:`bad_request` (HTTP 400).
    """
    if not raw.strip():
        return
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise bad_request(service)


def authenticate(
    cloud: Cloud, request: Request, raw: bytes, service: Service, url_project: str | None
) -> Caller:
    """The caller of a token or AK/SK request, checked against the project in the URL."""
    if request.headers.get("authorization", "").startswith("SDK-HMAC-SHA256"):
        caller = verify_request(
            cloud.iam,
            now=cloud.clock.now(),
            max_skew_seconds=cloud.seed.limits.signature_skew_seconds,
            method=request.method,
            path=request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or request.url.path,
            query=list(request.query_params.multi_items()),
            headers=request.headers,
            body=raw,
        )
    else:
        try:
            caller = cloud.iam.caller_for_token(request.headers.get("x-auth-token"))
        except AuthFailure as exc:
            raise auth_error(service, exc.reason) from None
    if service == "ecs" and url_project is not None and caller.project_id != url_project:
        raise ecs_error("Ecs.0023")
    if service == "ims" and (caller.project_id is None or (url_project and caller.project_id != url_project)):
        # [inference] a token without project scope, or for another project than the URL's.
        raise ims_error("IMG.0030")
    return caller


def state_of(cloud: Cloud, service: Service) -> Iam | Ecs | Ims:
    """The state object a service's operations work on (looked up per call: :meth:`reset` rebuilds it)."""
    if service == "iam":
        return cloud.iam
    if service == "ecs":
        return cloud.ecs
    return cloud.ims


async def answer(cloud: Cloud, request: Request, route: Route) -> Response:
    """Run one API request through the pipeline (see the module docstring) to its operation."""
    raw = await request.body()
    operation = route.operation if isinstance(route.operation, str) else route.operation(raw)
    cloud.count(operation)
    service = route.service
    call = Call(dict(request.query_params), request.headers, raw, str(request.base_url).rstrip("/"))
    limited = cloud.check_rate()
    if limited is not None:
        return error_response(limited, request.method)

    commit_fail: FaultRule | None = None
    for rule in cloud.faults.evaluate(operation, request.method, request.url.path):
        kind = rule.spec.kind
        cloud.count(f"faults.{kind}")
        if kind == "delay":
            await cloud.clock.sleep(rule.spec.seconds if rule.spec.seconds is not None else 1.0)
        elif kind == "token_revoked":
            token = request.headers.get("x-auth-token")
            if token:
                with cloud.lock:
                    cloud.iam.revoke(token)
        elif kind == "connection_reset":
            return drop_connection(request)
        elif kind == "job_fail":
            call.job_fault.fail = True
            call.job_fault.error_code = rule.spec.error_code
            call.job_fault.fail_reason = rule.spec.fail_reason
        elif kind == "job_stuck":
            call.job_fault.stuck = True
        elif kind == "commit_then_fail":
            commit_fail = commit_fail or rule
        else:
            return error_response(fault_error(service, rule), request.method)

    try:
        with cloud.lock:
            if route.auth:
                url_project = request.path_params.get("project_id")
                call.caller = authenticate(cloud, request, raw, service, url_project)
            check_content_type(service, request.headers, raw)
            reply = route.handler(state_of(cloud, service), call, **request.path_params)
    except CloudError as err:
        return error_response(err, request.method)
    if commit_fail is not None:
        # The operation has been applied; only the answer is lost.
        if commit_fail.spec.mode == "reset":
            return drop_connection(request)
        return error_response(fault_error(service, commit_fail), request.method)
    return reply.response()
