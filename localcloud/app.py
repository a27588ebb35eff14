"""The HTTP app of the local cloud (FastAPI): one port, services told apart by the path prefix.

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
IMS        POST /ims/v1/cloudimages/wholeimages/action          ims.create_whole_image
=========  ===================================================  ==========================

The rows come from each service's routing table (``iam/wire.py``, ``ecs/wire.py``, ``ims/wire.py``).
Every path is served twice: with the service prefix above, and bare (the real API path, for a client
that uses one base URL for all three services). ECS and IMS share the job path ``/v1/{project_id}/jobs/
{job_id}`` on different hosts: under a prefix a job id only resolves for its own service (the prefix plays
the host's part); on the bare path the job id tells whose job it is. ``/v1/cloudimages/job/{job_id}`` is
Huawei Cloud's job API (ShowJobProgress; OTC documents only the older project path, Huawei Cloud marks
that one deprecated): both are served.

A path or method no route serves answers as the API gateway does (404 ``APIG.0101``); FastAPI's own
``{"detail": ...}`` bodies never reach a client. What a request goes through is in ``gateway.py``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from localcloud.clock import ManualClock, fmt_micros
from localcloud.ecs import wire as ecs_wire
from localcloud.errors import APIG_0101, gateway_error
from localcloud.gateway import (
    Cloud,
    Outermost,
    Route,
    answer,
    bad_request,
    error_response,
    server_error,
    service_of_path,
)
from localcloud.iam import wire as iam_wire
from localcloud.ims import wire as ims_wire
from localcloud.seed import FaultRuleSeed

if TYPE_CHECKING:
    from starlette.types import ASGIApp

Endpoint = Callable[[Request], Awaitable[Response]]
LOOPBACK = ("127.0.0.1", "::1", "localhost")
ROUTES: tuple[Route, ...] = (*iam_wire.ROUTES, *ecs_wire.ROUTES, *ims_wire.ROUTES)
_JOB_ROUTES = {r.operation: r for r in ROUTES if r.operation in ("ecs.show_job", "ims.show_job")}


def build_app(cloud: Cloud) -> ASGIApp:
    """The ASGI app serving ``cloud`` (``LocalCloud.app`` builds it once; a server may build its own)."""
    api = FastAPI(title="localcloud", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.cloud = cloud
    # [inference] The gateway does not redirect "/path/" to "/path": a trailing slash is another path.
    api.router.redirect_slashes = False
    api.add_exception_handler(StarletteHTTPException, no_route)
    api.add_exception_handler(RequestValidationError, invalid_request)
    for route in ROUTES:
        # The bare paths are the real API paths on one base URL (what a client configured with a single
        # local endpoint calls); the prefixed ones keep the services apart where their paths collide.
        endpoint = _endpoint(route)
        api.add_api_route(f"/{route.service}{route.path}", endpoint, methods=[route.method])
        if route.shared:
            api.add_api_route(route.path, endpoint, methods=[route.method])
    api.add_api_route("/v1/{project_id}/jobs/{job_id}", show_any_job, methods=["GET"])
    for path, method, handler in LOCAL_ROUTES:
        api.add_api_route(path, local_only(handler), methods=[method], include_in_schema=False)
    return Outermost(api)


def _cloud(request: Request) -> Cloud:
    cloud: Cloud = request.app.state.cloud
    return cloud


def _endpoint(route: Route) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return await answer(_cloud(request), request, route)

    return endpoint


async def show_any_job(request: Request) -> Response:
    """The job path shared by ECS and IMS on one base URL: the job id tells whose job it is.

    [inference] An id known to neither answers as ECS does (``Common.0011``).
    """
    cloud = _cloud(request)
    service = "ims" if request.path_params["job_id"] in cloud.ims.jobs else "ecs"
    return await answer(cloud, request, _JOB_ROUTES[f"{service}.show_job"])


async def no_route(request: Request, exc: Exception) -> Response:
    """No route for this path (404) or for this method on it (405): the API gateway's answer.

    [inference] APIG.0101 "The API does not exist or has not been published in the environment."
    with HTTP 404, for an unknown method too: the gateway publishes APIs by method + path. (The
    status-code pages list 405 "Method Not Allowed" generically, with no body or code.)
    """
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):
        return error_response(gateway_error("APIG.0101", APIG_0101, 404), request.method)
    service = service_of_path(request.url.path)
    if service is None:
        return error_response(gateway_error("APIG.0101", APIG_0101, 404), request.method)
    return error_response(server_error(service, exc.status_code, None, None), request.method)


async def invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 ``{"detail": ...}`` never reaches a client: the service's own 400 instead."""
    service = service_of_path(request.url.path)
    if service is None:
        return error_response(gateway_error("APIG.0101", APIG_0101, 404), request.method)
    return error_response(bad_request(service), request.method)


# ---- /_local: for tests and demos, loopback clients only ---------------------------------------------------


def _json(body: object, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


def local_only(handler: Endpoint) -> Endpoint:
    async def guarded(request: Request) -> Response:
        host = request.client.host if request.client else ""
        if host not in LOOPBACK and not host.startswith("127."):
            return _json({"error": "/_local is only served to loopback clients"}, 403)
        return await handler(request)

    return guarded


async def local_stats(request: Request) -> Response:
    return _json(_cloud(request).stats())


async def local_reset(request: Request) -> Response:
    _cloud(request).reset()
    return _json({"reset": True})


async def local_clock(request: Request) -> Response:
    clock = _cloud(request).clock
    return _json({"now": fmt_micros(clock.now()), "manual": isinstance(clock, ManualClock)})


async def local_clock_advance(request: Request) -> Response:
    clock = _cloud(request).clock
    if not isinstance(clock, ManualClock):
        return _json({"error": "the clock is not a ManualClock"}, 409)
    try:
        body = json.loads(await request.body() or b"{}")
        seconds = float(body["seconds"])
    except (ValueError, KeyError, TypeError):
        return _json({"error": 'expected {"seconds": <number>}'}, 400)
    if seconds < 0:
        return _json({"error": "seconds must not be negative"}, 400)
    clock.advance(seconds)
    return _json({"now": fmt_micros(clock.now())})


async def local_faults_get(request: Request) -> Response:
    return _json({"faults": [r.as_dict() for r in _cloud(request).faults.rules]})


async def local_faults_post(request: Request) -> Response:
    faults = _cloud(request).faults
    try:
        data = json.loads(await request.body() or b"null")
        specs = data if isinstance(data, list) else [data]
        rules = [faults.add(FaultRuleSeed.model_validate(s)) for s in specs]
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return _json({"error": str(exc)}, 400)
    return _json({"faults": [r.as_dict() for r in rules]}, 201)


async def local_faults_delete(request: Request) -> Response:
    _cloud(request).faults.clear()
    return Response(status_code=204)


async def local_fault_delete(request: Request) -> Response:
    if _cloud(request).faults.remove(request.path_params["rule_id"]):
        return Response(status_code=204)
    return _json({"error": "no such fault rule"}, 404)


async def local_obs(request: Request) -> Response:
    return _json(_cloud(request).obs)


LOCAL_ROUTES: tuple[tuple[str, str, Endpoint], ...] = (
    ("/_local/stats", "GET", local_stats),
    ("/_local/reset", "POST", local_reset),
    ("/_local/clock", "GET", local_clock),
    ("/_local/clock/advance", "POST", local_clock_advance),
    ("/_local/faults", "GET", local_faults_get),
    ("/_local/faults", "POST", local_faults_post),
    ("/_local/faults", "DELETE", local_faults_delete),
    ("/_local/faults/{rule_id}", "DELETE", local_fault_delete),
    ("/_local/obs", "GET", local_obs),
)
