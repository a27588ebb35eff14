"""HTTP routes of the local cloud (FastAPI). One port; services told apart by the path prefix.

=========  ===================================================  ==========================
service    path (prefix + the path of the API page)             operation (stats name)
=========  ===================================================  ==========================
IAM        POST /iam/v3/auth/tokens                             iam.create_token
IAM        HEAD /iam/v3/auth/tokens                             iam.verify_token
IAM        GET  /iam/v3/projects, /iam/v3/auth/projects         iam.list_projects
ECS        GET  /ecs/v1/{project_id}/cloudservers/{server_id}   ecs.show_server
ECS        GET  /ecs/v1/{project_id}/cloudservers/detail        ecs.list_servers
ECS        POST /ecs/v1/{project_id}/cloudservers/action        ecs.stop_servers / ecs.start_servers
ECS        GET  /ecs/v1/{project_id}/jobs/{job_id}              ecs.show_job
IMS        POST /ims/v2/cloudimages/action                      ims.create_image
IMS        GET  /ims/v2/cloudimages                             ims.list_images
IMS        GET  /ims/v2/images/{image_id}                       ims.show_image
IMS        DELETE /ims/v2/images/{image_id}                     ims.delete_image
IMS        POST /ims/v1/cloudimages/{image_id}/file             ims.export_image
IMS        GET  /ims/v1/cloudimages/quota                       ims.show_quota
IMS        GET  /ims/v1/{project_id}/jobs/{job_id}              ims.show_job
IMS        GET  /ims/v1/cloudimages/job/{job_id}                ims.show_job_progress
=========  ===================================================  ==========================

Every path is served twice: with the service prefix above, and bare (the real API path, for a client
that uses one base URL for all three services). ECS and IMS share the job path ``/v1/{project_id}/jobs/
{job_id}`` on different hosts: under a prefix a job id only resolves for its own service (the prefix plays
the host's part); on the bare path the job id tells whose job it is. ``/v1/cloudimages/job/{job_id}`` is
Huawei Cloud's job API (ShowJobProgress; OTC documents only the older project path, Huawei Cloud marks
that one deprecated): both are served.

Every answer carries ``X-Request-Id`` (32 hex, fresh per request; set once, in the outermost ASGI layer);
gateway bodies carry the same value in ``request_id``. A path or method no route serves answers as the API
gateway does (404 ``APIG.0101``); FastAPI's own ``{"detail": ...}`` bodies never reach a client.

Request pipeline: count the call, request-rate limit, fault rules, authentication (token or AK/SK), the
operation itself (under the cloud's lock), then any commit-then-fail fault.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from localcloud.clock import ManualClock, fmt_micros
from localcloud.ecs import JobFault
from localcloud.errors import (
    APIG_0101,
    CURRENT_REQUEST_ID,
    CloudError,
    ecs_error,
    gateway_error,
    iam_error,
    ims_error,
    new_request_id,
)
from localcloud.faults import ConnectionDropped, FaultRule
from localcloud.iam import AuthFailure, AuthReason, Caller
from localcloud.seed import FaultRuleSeed

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from localcloud.cloud import LocalCloud

Service = Literal["iam", "ecs", "ims"]
RAW_SEND = "localcloud.raw_send"
REQUEST_ID = "localcloud.request_id"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class Ctx:
    """What an operation gets: the request, its body, the caller, and any job fault to apply."""

    request: Request
    raw: bytes
    caller: Caller | None = None
    job_fault: JobFault = field(default_factory=JobFault)

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    @property
    def project_id(self) -> str:
        # Only read after authenticate(), which guarantees a project-scoped caller for IMS and ECS.
        assert self.caller is not None
        assert self.caller.project_id is not None
        return self.caller.project_id


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


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


class _Outermost:
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


def check_content_type(service: Service, request: Request, raw: bytes) -> None:
    """A request with a body must say ``Content-Type: application/json`` (parameters such as charset ok).

    The pages: Content-Type is mandatory when a request has a body, and the APIs take JSON
    (common/api-usage overview_of_rest_apis.rst; IAM pages: "application/json;charset=utf8").
    [inference] The answer to a missing or other Content-Type is :func:`bad_request` (HTTP 400).
    """
    if not raw.strip():
        return
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise bad_request(service)


def build_app(cloud: LocalCloud) -> ASGIApp:
    api = FastAPI(title="localcloud", docs_url=None, redoc_url=None, openapi_url=None)
    # [inference] The gateway does not redirect "/path/" to "/path": a trailing slash is another path.
    api.router.redirect_slashes = False

    @api.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, exc: StarletteHTTPException) -> Response:
        """No route for this path (404) or for this method on it (405): the API gateway's answer.

        [inference] APIG.0101 "The API does not exist or has not been published in the environment."
        with HTTP 404, for an unknown method too: the gateway publishes APIs by method + path. (The
        status-code pages list 405 "Method Not Allowed" generically, with no body or code.)
        """
        if exc.status_code in (404, 405):
            return error_response(gateway_error("APIG.0101", APIG_0101, 404), request.method)
        service = service_of_path(request.url.path)
        if service is None:
            return error_response(gateway_error("APIG.0101", APIG_0101, 404), request.method)
        return error_response(server_error(service, exc.status_code, None, None), request.method)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        """FastAPI's 422 ``{"detail": ...}`` never reaches a client: the service's own 400 instead."""
        service = service_of_path(request.url.path)
        if service is None:
            return error_response(gateway_error("APIG.0101", APIG_0101, 404), request.method)
        return error_response(bad_request(service), request.method)

    def authenticate(ctx: Ctx, service: Service, url_project: str | None) -> Caller:
        request = ctx.request
        authz = request.headers.get("authorization", "")
        if authz.startswith("SDK-HMAC-SHA256"):
            caller = cloud_verify_signature(cloud, request, ctx.raw)
        else:
            try:
                caller = cloud.iam.caller_for_token(request.headers.get("x-auth-token"))
            except AuthFailure as exc:
                raise auth_error(service, exc.reason) from None
        if service == "ecs" and url_project is not None and caller.project_id != url_project:
            raise ecs_error("Ecs.0023")
        if service == "ims" and (
            caller.project_id is None or (url_project and caller.project_id != url_project)
        ):
            # [inference] a token without project scope, or for another project than the URL's.
            raise ims_error("IMG.0030")
        return caller

    async def pipeline(
        request: Request,
        operation: str,
        service: Service,
        impl: Callable[[Ctx], Response],
        *,
        auth: bool = True,
        url_project: str | None = None,
        raw: bytes | None = None,
    ) -> Response:
        cloud.count(operation)
        if raw is None:
            raw = await request.body()
        ctx = Ctx(request, raw)
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
                ctx.job_fault.fail = True
                ctx.job_fault.error_code = rule.spec.error_code
                ctx.job_fault.fail_reason = rule.spec.fail_reason
            elif kind == "job_stuck":
                ctx.job_fault.stuck = True
            elif kind == "commit_then_fail":
                commit_fail = commit_fail or rule
            else:
                return error_response(fault_error(service, rule), request.method)

        try:
            with cloud.lock:
                if auth:
                    ctx.caller = authenticate(ctx, service, url_project)
                check_content_type(service, request, raw)
                response = impl(ctx)
        except CloudError as err:
            return error_response(err, request.method)
        if commit_fail is not None:
            # The operation has been applied; only the answer is lost.
            if commit_fail.spec.mode == "reset":
                return drop_connection(request)
            return error_response(fault_error(service, commit_fail), request.method)
        return response

    Endpoint = Callable[..., Awaitable[Response]]

    def route(
        method: str, service: Service, path: str, *, shared: bool = True
    ) -> Callable[[Endpoint], Endpoint]:
        """Register ``/{service}{path}`` and, unless ``shared`` is False, the bare ``path`` too.

        The bare paths are the real API paths on one base URL (what a client configured with a single
        local endpoint calls); the prefixed ones keep the services apart where their paths collide.
        """

        def register(endpoint: Endpoint) -> Endpoint:
            api.add_api_route(f"/{service}{path}", endpoint, methods=[method])
            if shared:
                api.add_api_route(path, endpoint, methods=[method])
            return endpoint

        return register

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # ---- IAM ---------------------------------------------------------------------------------------------

    @route("POST", "iam", "/v3/auth/tokens")
    async def create_token(request: Request) -> Response:
        def impl(ctx: Ctx) -> Response:
            try:
                body = json.loads(ctx.raw) if ctx.raw.strip() else None
            except ValueError:
                raise iam_error("IAM.0011") from None
            token, payload = cloud.iam.issue_token(
                body, nocatalog=bool(request.query_params.get("nocatalog")), base_url=base_url(request)
            )
            return json_response(payload, 201, {"X-Subject-Token": token})

        return await pipeline(request, "iam.create_token", "iam", impl, auth=False)

    @route("HEAD", "iam", "/v3/auth/tokens")
    async def verify_token(request: Request) -> Response:
        def impl(ctx: Ctx) -> Response:
            cloud.iam.verify_subject(
                request.headers.get("x-auth-token"), request.headers.get("x-subject-token")
            )
            return Response(status_code=200)

        return await pipeline(request, "iam.verify_token", "iam", impl, auth=False)

    @route("GET", "iam", "/v3/projects")
    @route("GET", "iam", "/v3/auth/projects")
    async def list_projects(request: Request) -> Response:
        def impl(ctx: Ctx) -> Response:
            assert ctx.caller is not None
            return json_response(cloud.iam.list_projects(ctx.caller, ctx.query, base_url(request)))

        return await pipeline(request, "iam.list_projects", "iam", impl)

    # ---- ECS ---------------------------------------------------------------------------------------------

    @route("GET", "ecs", "/v1/{project_id}/cloudservers/detail")
    async def list_servers(request: Request, project_id: str) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response(cloud.ecs.list_servers(project_id, ctx.query))

        return await pipeline(request, "ecs.list_servers", "ecs", impl, url_project=project_id)

    @route("GET", "ecs", "/v1/{project_id}/cloudservers/{server_id}")
    async def show_server(request: Request, project_id: str, server_id: str) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response({"server": cloud.ecs.server_body(cloud.ecs.get(project_id, server_id))})

        return await pipeline(request, "ecs.show_server", "ecs", impl, url_project=project_id)

    @route("POST", "ecs", "/v1/{project_id}/cloudservers/action")
    async def server_action(request: Request, project_id: str) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = ValueError
        operation = (
            "ecs.start_servers" if isinstance(body, dict) and "os-start" in body else "ecs.stop_servers"
        )

        def impl(ctx: Ctx) -> Response:
            if body is ValueError:
                raise ecs_error("Ecs.0005")
            return json_response({"job_id": cloud.ecs.action(project_id, body, ctx.job_fault)})

        return await pipeline(request, operation, "ecs", impl, url_project=project_id, raw=raw)

    @route("GET", "ecs", "/v1/{project_id}/jobs/{job_id}", shared=False)
    async def show_ecs_job(request: Request, project_id: str, job_id: str) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response(cloud.ecs.job_body(project_id, job_id))

        return await pipeline(request, "ecs.show_job", "ecs", impl, url_project=project_id)

    # ---- IMS ---------------------------------------------------------------------------------------------

    @route("POST", "ims", "/v2/cloudimages/action")
    async def create_image(request: Request) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response({"job_id": cloud.ims.create_image(ctx.project_id, ctx.raw, ctx.job_fault)})

        return await pipeline(request, "ims.create_image", "ims", impl)

    @route("GET", "ims", "/v2/cloudimages")
    async def list_images(request: Request) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response(cloud.ims.list_images(ctx.project_id, ctx.query))

        return await pipeline(request, "ims.list_images", "ims", impl)

    @route("GET", "ims", "/v2/images/{image_id}")
    async def show_image(request: Request, image_id: str) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response(cloud.ims.show_image(ctx.project_id, image_id))

        return await pipeline(request, "ims.show_image", "ims", impl)

    @route("DELETE", "ims", "/v2/images/{image_id}")
    async def delete_image(request: Request, image_id: str) -> Response:
        def impl(ctx: Ctx) -> Response:
            cloud.ims.delete_image(ctx.project_id, image_id, ctx.raw)
            return Response(status_code=204)

        return await pipeline(request, "ims.delete_image", "ims", impl)

    @route("POST", "ims", "/v1/cloudimages/{image_id}/file")
    async def export_image(request: Request, image_id: str) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response(
                {"job_id": cloud.ims.export_image(ctx.project_id, image_id, ctx.raw, ctx.job_fault)}
            )

        return await pipeline(request, "ims.export_image", "ims", impl)

    @route("GET", "ims", "/v1/cloudimages/quota")
    async def show_quota(request: Request) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response(cloud.ims.quota(ctx.project_id))

        return await pipeline(request, "ims.show_quota", "ims", impl)

    @route("GET", "ims", "/v1/{project_id}/jobs/{job_id}", shared=False)
    async def show_ims_job(request: Request, project_id: str, job_id: str) -> Response:
        def impl(ctx: Ctx) -> Response:
            return json_response(cloud.ims.job_body(project_id, job_id))

        return await pipeline(request, "ims.show_job", "ims", impl, url_project=project_id)

    @route("GET", "ims", "/v1/cloudimages/job/{job_id}")
    async def show_job_progress(request: Request, job_id: str) -> Response:
        """Huawei Cloud's job API (ShowJobProgress): no project id in the path, the token's project."""

        def impl(ctx: Ctx) -> Response:
            return json_response(cloud.ims.job_body(ctx.project_id, job_id, progress=True))

        return await pipeline(request, "ims.show_job_progress", "ims", impl)

    @api.get("/v1/{project_id}/jobs/{job_id}")
    async def show_any_job(request: Request, project_id: str, job_id: str) -> Response:
        """The job path shared by ECS and IMS on one base URL: the job id tells whose job it is.

        [inference] An id known to neither answers as ECS does (``Common.0011``).
        """
        if job_id in cloud.ims.jobs:
            return await show_ims_job(request, project_id, job_id)
        return await show_ecs_job(request, project_id, job_id)

    # ---- /_local: for tests and demos, loopback clients only ---------------------------------------------

    def local_only(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            host = request.client.host if request.client else ""
            if host not in LOOPBACK and not host.startswith("127."):
                return json_response({"error": "/_local is only served to loopback clients"}, 403)
            return await handler(request)

        return guarded

    async def local_stats(request: Request) -> Response:
        return json_response(cloud.stats())

    async def local_reset(request: Request) -> Response:
        cloud.reset()
        return json_response({"reset": True})

    async def local_clock(request: Request) -> Response:
        return json_response(
            {"now": fmt_micros(cloud.clock.now()), "manual": isinstance(cloud.clock, ManualClock)}
        )

    async def local_clock_advance(request: Request) -> Response:
        if not isinstance(cloud.clock, ManualClock):
            return json_response({"error": "the clock is not a ManualClock"}, 409)
        try:
            body = json.loads(await request.body() or b"{}")
            seconds = float(body["seconds"])
        except (ValueError, KeyError, TypeError):
            return json_response({"error": 'expected {"seconds": <number>}'}, 400)
        if seconds < 0:
            return json_response({"error": "seconds must not be negative"}, 400)
        cloud.clock.advance(seconds)
        return json_response({"now": fmt_micros(cloud.clock.now())})

    async def local_faults_get(request: Request) -> Response:
        return json_response({"faults": [r.as_dict() for r in cloud.faults.rules]})

    async def local_faults_post(request: Request) -> Response:
        try:
            data = json.loads(await request.body() or b"null")
            specs = data if isinstance(data, list) else [data]
            rules = [cloud.faults.add(FaultRuleSeed.model_validate(s)) for s in specs]
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            return json_response({"error": str(exc)}, 400)
        return json_response({"faults": [r.as_dict() for r in rules]}, 201)

    async def local_faults_delete(request: Request) -> Response:
        cloud.faults.clear()
        return Response(status_code=204)

    async def local_fault_delete(request: Request) -> Response:
        if cloud.faults.remove(request.path_params["rule_id"]):
            return Response(status_code=204)
        return json_response({"error": "no such fault rule"}, 404)

    async def local_obs(request: Request) -> Response:
        return json_response(cloud.obs)

    for path, method, handler in (
        ("/_local/stats", "GET", local_stats),
        ("/_local/reset", "POST", local_reset),
        ("/_local/clock", "GET", local_clock),
        ("/_local/clock/advance", "POST", local_clock_advance),
        ("/_local/faults", "GET", local_faults_get),
        ("/_local/faults", "POST", local_faults_post),
        ("/_local/faults", "DELETE", local_faults_delete),
        ("/_local/faults/{rule_id}", "DELETE", local_fault_delete),
        ("/_local/obs", "GET", local_obs),
    ):
        api.add_api_route(path, local_only(handler), methods=[method], include_in_schema=False)

    return _Outermost(api)


def cloud_verify_signature(cloud: LocalCloud, request: Request, raw: bytes) -> Caller:
    """AK/SK requests (``SDK-HMAC-SHA256``), verified as the API gateway does."""
    from localcloud.signing import verify_request

    return verify_request(cloud, request, raw)
