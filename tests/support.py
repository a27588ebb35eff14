"""What tests share: the local cloud in-process on a manual clock, and settings pointing at it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from imsflow.settings import ImsflowSettings
from localcloud import ConnectionDropped, LocalCloud, ManualClock, Seed

BASE_URL = "http://127.0.0.1:8780"
#: How the client reaches the three services. ``one-url``: one base URL for IAM, ECS and IMS (the local
#: profile's default). ``per-service``: a base URL per service, as on a real cloud, where ECS and IMS are
#: different hosts that share the job path ``/v1/{project_id}/jobs/{job_id}`` (the local cloud's service
#: prefixes play the hosts' part). The flow suite runs under both (tests/flows/conftest.py).
LAYOUTS: dict[str, dict[str, str]] = {
    "one-url": {"iam_url": BASE_URL, "ecs_url": BASE_URL, "ims_url": BASE_URL},
    "per-service": {f"{s}_url": f"{BASE_URL}/{s}" for s in ("iam", "ecs", "ims")},
}
_layout = "one-url"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
WEB_1 = "6f1c2d7e-0000-4000-8000-000000000001"  # SHUTOFF
DB_1 = "6f1c2d7e-0000-4000-8000-000000000002"  # ACTIVE
PASSWORD = "test-Passw0rd-not-in-any-log"


def seed_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "domains": [
            {
                "name": "demo",
                "users": [{"name": "alice", "password": PASSWORD}],
                "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
            }
        ],
        "servers": [
            {"id": WEB_1, "name": "web-1", "project": "eu-de", "status": "SHUTOFF", "tags": ["env=prod"]},
            {"id": DB_1, "name": "db-1", "project": "eu-de", "status": "ACTIVE"},
        ],
        "timing": {"image_job_seconds": 60, "stop_seconds": 10, "start_seconds": 10},
    }
    data.update(overrides)
    return data


def make_cloud(**overrides: Any) -> LocalCloud:
    # The clock starts at real time: tokens are judged against the wall clock by the client.
    return LocalCloud(seed=Seed.model_validate(seed_data(**overrides)), clock=ManualClock(datetime.now(UTC)))


@contextmanager
def endpoint_layout(name: str) -> Iterator[None]:
    """Point :func:`settings_for` (and :func:`endpoints`) at the services the way ``name`` says."""
    global _layout
    if name not in LAYOUTS:
        raise ValueError(f"unknown endpoint layout {name!r}; known: {', '.join(LAYOUTS)}")
    previous, _layout = _layout, name
    try:
        yield
    finally:
        _layout = previous


def endpoints() -> dict[str, str]:
    """``iam_url``, ``ecs_url``, ``ims_url`` of the current endpoint layout."""
    return dict(LAYOUTS[_layout])


def settings_for(**overrides: Any) -> ImsflowSettings:
    values: dict[str, Any] = {
        "profile": "local",
        **endpoints(),
        "domain": "demo",
        "username": "alice",
        "password": PASSWORD,
        "poll_initial_delay": 2.0,
    }
    values.update(overrides)
    return ImsflowSettings(_env_file=None, **values)


@dataclass(frozen=True)
class Call:
    """One request as the network shim saw it, stamped with the cloud's clock."""

    at: datetime
    method: str
    path: str
    outcome: str  # the HTTP status as text, or "reset" / "timeout"


class CloudNetwork(httpx.AsyncBaseTransport):
    """The in-process local cloud behind a network that fails the way a real one does.

    Over ``httpx.ASGITransport`` a dropped connection arrives as localcloud's own ``ConnectionDropped``
    and a ``delay`` fault only moves the cloud's clock, so the client would always get its answer. This shim
    turns the first into a plain ``httpx.RemoteProtocolError`` and, when the cloud's clock moved past the
    client's read timeout while the request was inside the cloud, drops the (already applied) answer and
    raises ``httpx.ReadTimeout``: what a client with a real socket sees. ``calls`` records every request.
    """

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self._asgi = httpx.ASGITransport(app=cloud.app)
        self.calls: list[Call] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = self.cloud.clock.now()
        path = request.url.path
        try:
            response = await self._asgi.handle_async_request(request)
        except ConnectionDropped as exc:
            self.calls.append(Call(started, request.method, path, "reset"))
            raise httpx.RemoteProtocolError(str(exc), request=request) from None
        waited = (self.cloud.clock.now() - started).total_seconds()
        read_timeout = request.extensions.get("timeout", {}).get("read")
        if read_timeout is not None and waited > read_timeout:
            await response.aclose()
            self.calls.append(Call(started, request.method, path, "timeout"))
            raise httpx.ReadTimeout(f"no answer within {read_timeout:g} s", request=request)
        self.calls.append(Call(started, request.method, path, str(response.status_code)))
        return response

    def calls_to(self, method: str, path_suffix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(path_suffix)]


def transport_for(cloud: LocalCloud) -> CloudNetwork:
    return CloudNetwork(cloud)


def virtual_time(cloud: LocalCloud) -> dict[str, Any]:
    """Runtime pieces that make waiting advance the local cloud's clock instead of sleeping."""
    clock = cloud.clock
    assert isinstance(clock, ManualClock)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    return {"clock": lambda: clock.now().timestamp(), "sleep": sleep}


@contextmanager
def cloud_runtime(
    cloud: LocalCloud, network: CloudNetwork | None = None, **settings_overrides: Any
) -> Iterator[ImsflowSettings]:
    import runtime

    settings = settings_for(**settings_overrides)
    with runtime.use_runtime(
        settings_factory=lambda: settings,
        transport=network or transport_for(cloud),
        **virtual_time(cloud),
    ):
        yield settings


async def delete_prefect_variables(prefix: str) -> list[str]:
    """Delete the Prefect variables whose names start with ``prefix`` (claims, ECS locks): tests share the
    session's Prefect server, so each leaves none behind. Returns the names deleted."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        names = [v.name for v in await client.read_variables() if v.name.startswith(prefix)]
        for name in names:
            await client.delete_variable_by_name(name)
    return names


def holder_fields(
    *, alive: bool = True, host: str | None = None, heartbeat_age: float = 0.0
) -> dict[str, Any]:
    """The liveness fields of a claim or an ECS lock (``runtime.slots.Holder``) as another run leaves them:
    held by this (live) process, or by one that has ended (``kill -9``); on this host or ``host``; with a
    heartbeat ``heartbeat_age`` seconds old."""
    import os
    import socket
    import subprocess
    import sys
    from datetime import timedelta

    import psutil

    if alive:
        pid = os.getpid()
        started = psutil.Process(pid).create_time()
    else:
        ended = subprocess.Popen([sys.executable, "-c", ""])
        ended.wait()
        pid, started = ended.pid, 1.0
    return {
        "host": host or socket.gethostname(),
        "boot": psutil.boot_time(),
        "pid": pid,
        "started": started,
        "heartbeat": datetime.now(UTC) - timedelta(seconds=heartbeat_age),
    }


@contextmanager
def prefect_answer_lost(method: str, path: str, body: str = "") -> Iterator[list[httpx.Request]]:
    """The Prefect server applies the first ``method`` request to a path ending in ``path`` (with ``body`` in
    its body), but its answer is lost, so Prefect's client sends it again, as it does when a server restarts
    mid-request (``httpx.ReadError`` is one of the errors it retries): the server sees the request twice and
    the client gets the second answer. Yields the requests sent twice (one, once it happened)."""
    from unittest import mock

    real = httpx.AsyncClient.send
    lost: list[httpx.Request] = []

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        matches = (
            not lost
            and request.method == method
            and request.url.path.endswith(path)
            and body in request.content.decode(errors="replace")
        )
        if not matches:
            return await real(self, request, **kwargs)
        lost.append(request)
        first = await real(self, request, **kwargs)
        await first.aclose()
        return await real(self, request, **kwargs)

    with mock.patch.object(httpx.AsyncClient, "send", send):
        yield lost


# ------------------------------------------------------------ crash points: a process that dies at a request


class Killed(BaseException):
    """The process died at this request (a BaseException, like the end of the process: nothing catches it)."""


Matcher = Callable[[httpx.Request], bool]


def image_look(r: httpx.Request) -> bool:
    return r.method == "GET" and "/v2/images/" in r.url.path


def job_query(r: httpx.Request) -> bool:
    return r.method == "GET" and "/jobs/" in r.url.path


def crash_after(first: Matcher, then: Matcher) -> Callable[[], Matcher]:
    """A new matcher (one per test: it keeps state) for the first request ``then`` picks once a request
    ``first`` picks went by."""

    def new() -> Matcher:
        seen = False

        def matches(r: httpx.Request) -> bool:
            nonlocal seen
            if seen and then(r):
                return True
            seen = seen or first(r)
            return False

        return matches

    return new


def crash_at(matcher: Matcher) -> Callable[[], Matcher]:
    return lambda: matcher


class DiesAt(CloudNetwork):
    """The local cloud's network, for a process that dies at the first request ``matches`` picks: after the
    cloud applied it (``applied``: the answer is lost with the process) or before it left."""

    def __init__(self, cloud: LocalCloud, matches: Matcher, *, applied: bool) -> None:
        super().__init__(cloud)
        self.matches, self.applied, self.fired = matches, applied, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.fired or not self.matches(request):
            return await super().handle_async_request(request)
        self.fired = True
        if self.applied:
            await (await super().handle_async_request(request)).aclose()
        raise Killed(f"{request.method} {request.url.path}")
