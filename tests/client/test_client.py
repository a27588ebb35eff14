"""CloudClient against httpx.MockTransport: paths, methods, headers, bodies, status codes, error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from imsflow import __version__
from imsflow.auth import AkSkAuth, TokenAuth
from imsflow.client import CloudClient, login
from imsflow.errors import (
    ConfigError,
    EcsNotFoundError,
    EcsNotStoppedError,
    ImageBeingCreatedError,
    InvalidCredentialsError,
    JobNotFoundError,
    ServerError,
    ThrottledError,
    TokenInvalidError,
    TransportError,
    UnexpectedResponseError,
)
from imsflow.models import CreateImageFromEcsRequest, ExportImageRequest, IamToken, ImageListQuery
from imsflow.settings import ImsflowSettings

from .conftest import (
    ECS,
    IAM,
    IMAGE_ID,
    IMS,
    PASSWORD,
    PROJECT_ID,
    SERVER_ID,
    TOKEN_VALUE,
    load,
    make_settings,
)

Handler = Callable[[httpx.Request], httpx.Response]


class Cloud:
    """A MockTransport that answers by (method, url path) and records every request in order."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, status: int = 200, body: Any = None, **kw: Any) -> None:
        def answer(request: httpx.Request) -> httpx.Response:
            if body is None and status == 204:
                return httpx.Response(status, **kw)
            return httpx.Response(status, json=body, **kw)

        self.routes[(method, path)] = answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(
                404, json={"error": {"code": "TEST.404", "message": f"no route {request.url}"}}
            )
        return route(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def cloud() -> Cloud:
    return Cloud()


def client_for(
    cloud: Cloud, settings: ImsflowSettings | None = None, token: IamToken | None = None
) -> CloudClient:
    from .conftest import make_token

    return CloudClient(
        settings or make_settings(project_id=PROJECT_ID),
        auth=TokenAuth(token or make_token()),
        transport=cloud.transport,
    )


# ---------------------------------------------------------------------------------------------- IAM


async def test_create_token(cloud: Cloud) -> None:
    cloud.on(
        "POST",
        "/v3/auth/tokens",
        201,
        load("iam_obtaining_a_user_token.response.json"),
        headers={"X-Subject-Token": TOKEN_VALUE},
    )
    async with CloudClient(make_settings(), transport=cloud.transport) as client:
        token = await client.iam.create_token(
            domain="domain A", username="user A", password=SecretStr(PASSWORD), project_name="eu-de"
        )
    assert token.value.get_secret_value() == TOKEN_VALUE
    assert token.user_name == "user A"
    request = cloud.requests[0]
    assert str(request.url) == f"{IAM}/v3/auth/tokens?nocatalog=true"
    assert "X-Auth-Token" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    body = cloud.body()
    assert body["auth"]["identity"]["password"]["user"] == {
        "name": "user A",
        "password": PASSWORD,
        "domain": {"name": "domain A"},
    }
    assert body["auth"]["scope"] == {"project": {"name": "eu-de"}}


async def test_create_token_without_subject_token_header(cloud: Cloud) -> None:
    cloud.on("POST", "/v3/auth/tokens", 201, load("iam_obtaining_a_user_token.response.json"))
    async with CloudClient(make_settings(), transport=cloud.transport) as client:
        with pytest.raises(UnexpectedResponseError, match="X-Subject-Token"):
            await client.iam.create_token(domain="d", username="u", password=SecretStr("p"))


async def test_wrong_password(cloud: Cloud) -> None:
    cloud.on(
        "POST",
        "/v3/auth/tokens",
        401,
        {"error": {"code": 401, "message": "Incorrect password.", "title": "x"}},
    )
    with pytest.raises(InvalidCredentialsError) as info:
        await login(make_settings(), transport=cloud.transport)
    assert info.value.code == "IAM.0062"
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value)


async def test_login_scopes_to_the_project_id_or_the_region(cloud: Cloud) -> None:
    cloud.on(
        "POST",
        "/v3/auth/tokens",
        201,
        load("iam_obtaining_a_user_token.response.json"),
        headers={"X-Subject-Token": TOKEN_VALUE},
    )
    await login(make_settings(region="eu-nl"), transport=cloud.transport)
    assert cloud.body()["auth"]["scope"] == {"project": {"name": "eu-nl"}}
    await login(make_settings(project_id=PROJECT_ID), transport=cloud.transport)
    assert cloud.body()["auth"]["scope"] == {"project": {"id": PROJECT_ID}}


async def test_login_needs_credentials() -> None:
    settings = ImsflowSettings(_env_file=None, profile="otc")
    with pytest.raises(ConfigError):
        await login(settings)


async def test_list_projects_and_resolve_project_id(cloud: Cloud) -> None:
    cloud.on("GET", "/v3/projects", 200, load("iam_querying_projects.response.json"))
    settings = make_settings(region="region_name")
    async with client_for(cloud, settings, token=_token(project_id=None)) as client:
        assert client.project_id is None
        assert await client.resolve_project_id() == "e86737682ab64b2490c48f08bcc41914"
        assert await client.resolve_project_id() == "e86737682ab64b2490c48f08bcc41914"
    assert len(cloud.requests) == 1
    assert cloud.requests[0].url.params["name"] == "region_name"


async def test_project_id_from_token_or_settings(cloud: Cloud) -> None:
    async with client_for(cloud, make_settings(), token=_token(project_id="from-token")) as client:
        assert await client.resolve_project_id() == "from-token"
    async with client_for(cloud, make_settings(project_id="from-settings"), token=_token("x")) as client:
        assert client.project_id == "from-settings"
        client.project_id = "set-later"
        assert await client.resolve_project_id() == "set-later"
    assert cloud.requests == []


async def test_no_project_for_the_region(cloud: Cloud) -> None:
    cloud.on("GET", "/v3/projects", 200, {"projects": []})
    async with client_for(cloud, make_settings(), token=_token(project_id=None)) as client:
        with pytest.raises(ConfigError, match="eu-de"):
            await client.resolve_project_id()


def _token(value: str = TOKEN_VALUE, project_id: str | None = PROJECT_ID) -> IamToken:
    from .conftest import make_token

    return make_token(value, project_id=project_id)


# ---------------------------------------------------------------------------------------------- ECS


async def test_get_server(cloud: Cloud) -> None:
    cloud.on(
        "GET",
        f"/v1/{PROJECT_ID}/cloudservers/{SERVER_ID}",
        200,
        load("ecs_querying_details_about_an_ecs.response.json"),
    )
    async with client_for(cloud) as client:
        server = await client.ecs.get_server(SERVER_ID)
    assert server.name == "ecs-2ecf"
    request = cloud.requests[0]
    assert str(request.url) == f"{ECS}/v1/{PROJECT_ID}/cloudservers/{SERVER_ID}"
    assert request.headers["X-Auth-Token"] == TOKEN_VALUE
    assert request.headers["User-Agent"] == f"imsflow/{__version__}"


async def test_get_server_not_found(cloud: Cloud) -> None:
    cloud.on(
        "GET",
        f"/v1/{PROJECT_ID}/cloudservers/{SERVER_ID}",
        404,
        {"error": {"code": "Ecs.0114", "message": "The ECS does not exist."}},
    )
    async with client_for(cloud) as client:
        with pytest.raises(EcsNotFoundError) as info:
            await client.ecs.get_server(SERVER_ID)
    assert info.value.status == 404
    assert SERVER_ID in info.value.url


async def test_ids_are_quoted_into_paths(cloud: Cloud) -> None:
    async with client_for(cloud) as client:
        with pytest.raises(Exception):  # noqa: B017 - only the URL matters here
            await client.ecs.get_server("../jobs/x?y")
    assert cloud.requests[0].url.raw_path.endswith(b"/cloudservers/..%2Fjobs%2Fx%3Fy")


async def test_list_servers(cloud: Cloud) -> None:
    cloud.on(
        "GET",
        f"/v1/{PROJECT_ID}/cloudservers/detail",
        200,
        load("ecs_listing_details_about_ecss.response.json"),
    )
    async with client_for(cloud) as client:
        page = await client.ecs.list_servers(
            name="web", status="SHUTOFF", tags="env=prod", not_tags="__type_baremetal"
        )
    assert page.count == 4
    assert dict(cloud.requests[0].url.params) == {
        "limit": "25",
        "offset": "1",
        "name": "web",
        "status": "SHUTOFF",
        "tags": "env=prod",
        "not-tags": "__type_baremetal",
    }


async def test_iter_servers_pages_until_count(cloud: Cloud) -> None:
    servers = [{"id": f"s{i}", "name": f"n{i}", "status": "ACTIVE"} for i in range(5)]

    def pages(request: httpx.Request) -> httpx.Response:
        limit, offset = int(request.url.params["limit"]), int(request.url.params["offset"])
        chunk = servers[(offset - 1) * limit : offset * limit]
        return httpx.Response(200, json={"count": len(servers), "servers": chunk})

    cloud.routes[("GET", f"/v1/{PROJECT_ID}/cloudservers/detail")] = pages
    async with client_for(cloud) as client:
        ids = [s.id async for s in client.ecs.iter_servers(limit=2)]
    assert ids == ["s0", "s1", "s2", "s3", "s4"]
    assert [r.url.params["offset"] for r in cloud.requests] == ["1", "2", "3"]


async def test_stop_and_start_servers(cloud: Cloud) -> None:
    cloud.on(
        "POST",
        f"/v1/{PROJECT_ID}/cloudservers/action",
        200,
        load("ecs_stopping_ecss_in_a_batch.response.json"),
    )
    async with client_for(cloud) as client:
        job_id = await client.ecs.stop_servers([SERVER_ID])
        assert job_id == "ff808082889bd9690189061140c235fe"
        assert cloud.body() == {"os-stop": {"servers": [{"id": SERVER_ID}], "type": "SOFT"}}
        await client.ecs.stop_servers([SERVER_ID], type="HARD")
        assert cloud.body()["os-stop"]["type"] == "HARD"
        await client.ecs.start_servers([SERVER_ID])
        assert cloud.body() == {"os-start": {"servers": [{"id": SERVER_ID}]}}


async def test_accepted_but_delayed_202_is_success(cloud: Cloud) -> None:
    cloud.on("POST", f"/v1/{PROJECT_ID}/cloudservers/action", 202, {"job_id": "a" * 32})
    async with client_for(cloud) as client:
        assert await client.ecs.stop_servers([SERVER_ID]) == "a" * 32


async def test_flow_limit_on_202_is_throttling(cloud: Cloud) -> None:
    cloud.on(
        "POST",
        f"/v1/{PROJECT_ID}/cloudservers/action",
        202,
        {"error": {"code": "Common.0024", "message": "Flow limit exceeded."}},
    )
    async with client_for(cloud) as client:
        with pytest.raises(ThrottledError) as info:
            await client.ecs.stop_servers([SERVER_ID])
    assert info.value.retryable
    assert info.value.code == "Common.0024"


async def test_ecs_429_with_retry_after(cloud: Cloud) -> None:
    cloud.on(
        "GET",
        f"/v1/{PROJECT_ID}/jobs/j1",
        429,
        {"error": {"code": "Common.1503", "message": "Api flow control Error because busy."}},
        headers={"Retry-After": "7"},
    )
    async with client_for(cloud) as client:
        with pytest.raises(ThrottledError) as info:
            await client.ecs.get_job("j1")
    assert info.value.retry_after == 7


async def test_ecs_get_job(cloud: Cloud) -> None:
    cloud.on(
        "GET",
        f"/v1/{PROJECT_ID}/jobs/2c9eb2c5544cbf6101544f0602af2b4f",
        200,
        load("ecs_querying_job_execution_status.response.json"),
    )
    async with client_for(cloud) as client:
        job = await client.ecs.get_job("2c9eb2c5544cbf6101544f0602af2b4f")
    assert job.status == "SUCCESS"
    assert str(cloud.requests[0].url).startswith(ECS)


@pytest.mark.parametrize("status", [200, 400])
async def test_ecs_job_query_failure_body(cloud: Cloud, status: int) -> None:
    cloud.on(
        "GET",
        f"/v1/{PROJECT_ID}/jobs/nope",
        status,
        {"code": "Common.0011", "message": "Failed to query system tasks."},
    )
    async with client_for(cloud) as client:
        with pytest.raises(JobNotFoundError):
            await client.ecs.get_job("nope")


# ---------------------------------------------------------------------------------------------- IMS


async def test_create_image_from_ecs(cloud: Cloud) -> None:
    cloud.on("POST", "/v2/cloudimages/action", 200, load("ims_creating_an_image.response.json"))
    page = load("ims_creating_an_image.request.ecs_tags.json")
    async with client_for(cloud) as client:
        job_id = await client.ims.create_image_from_ecs(CreateImageFromEcsRequest(**page))
    assert job_id == "8a12fc664fb4daa3014fb4e581380005"
    request = cloud.requests[0]
    assert str(request.url) == f"{IMS}/v2/cloudimages/action"
    assert request.method == "POST"
    assert cloud.body() == page


async def test_create_image_ecs_not_stopped(cloud: Cloud) -> None:
    cloud.on(
        "POST",
        "/v2/cloudimages/action",
        400,
        {
            "error": {
                "code": "IMG.0008",
                "message": "The ECS cannot be used to create images because it is not in stopped state.",
            }
        },
    )
    async with client_for(cloud) as client:
        with pytest.raises(EcsNotStoppedError) as info:
            await client.ims.create_image_from_ecs(CreateImageFromEcsRequest(name="n", instance_id=SERVER_ID))
    assert "IMG.0008" in str(info.value)
    assert f"{IMS}/v2/cloudimages/action" in str(info.value)


async def test_ims_get_job(cloud: Cloud) -> None:
    job_id = "9a175ac792fa12d20193002100dd2762"
    cloud.on(
        "GET",
        f"/v1/{PROJECT_ID}/jobs/{job_id}",
        200,
        load("ims_querying_job.response.create_image_by_instance.json"),
    )
    async with client_for(cloud) as client:
        job = await client.ims.get_job(job_id)
    assert job.image_id == IMAGE_ID
    assert str(cloud.requests[0].url) == f"{IMS}/v1/{PROJECT_ID}/jobs/{job_id}"


async def test_list_images_with_query(cloud: Cloud) -> None:
    cloud.on("GET", "/v2/cloudimages", 200, load("ims_querying_images.response.json"))
    async with client_for(cloud) as client:
        images = await client.ims.list_images(ImageListQuery(imagetype="gold", sort_key="name", limit=1))
        assert len(images) == 2
        await client.ims.list_images()
    assert str(cloud.requests[0].url) == f"{IMS}/v2/cloudimages?__imagetype=gold&limit=1&sort_key=name"
    assert str(cloud.requests[1].url) == f"{IMS}/v2/cloudimages"


async def test_iter_images_follows_the_marker(cloud: Cloud) -> None:
    images = [{"id": f"i{i}", "name": f"n{i}"} for i in range(5)]

    def pages(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        marker = request.url.params.get("marker")
        start = 0 if marker is None else [i["id"] for i in images].index(marker) + 1
        return httpx.Response(200, json={"images": images[start : start + limit]})

    cloud.routes[("GET", "/v2/cloudimages")] = pages
    async with client_for(cloud) as client:
        ids = [i.id async for i in client.ims.iter_images(ImageListQuery(imagetype="private", limit=2))]
    assert ids == ["i0", "i1", "i2", "i3", "i4"]
    assert [r.url.params.get("marker") for r in cloud.requests] == [None, "i1", "i3"]
    assert all(r.url.params["__imagetype"] == "private" for r in cloud.requests)


async def test_get_image(cloud: Cloud) -> None:
    cloud.on("GET", f"/v2/images/{IMAGE_ID}", 200, load("ims_querying_image_details.response.json"))
    async with client_for(cloud) as client:
        image = await client.ims.get_image(IMAGE_ID)
    assert image.status == "active"


async def test_delete_image(cloud: Cloud) -> None:
    cloud.on("DELETE", f"/v2/images/{IMAGE_ID}", 204)
    async with client_for(cloud) as client:
        await client.ims.delete_image(IMAGE_ID)
        await client.ims.delete_image(IMAGE_ID, delete_backup=True)
    assert cloud.requests[0].content == b""
    assert cloud.body() == {"delete_backup": True}


async def test_delete_image_being_created(cloud: Cloud) -> None:
    cloud.on(
        "DELETE",
        f"/v2/images/{IMAGE_ID}",
        400,
        {"error": {"code": "IMG.0090", "message": "The image being created cannot be deleted."}},
    )
    async with client_for(cloud) as client:
        with pytest.raises(ImageBeingCreatedError):
            await client.ims.delete_image(IMAGE_ID)


async def test_export_image(cloud: Cloud) -> None:
    cloud.on("POST", f"/v1/cloudimages/{IMAGE_ID}/file", 200, load("ims_exporting_an_image.response.json"))
    page = load("ims_exporting_an_image.request.json")
    async with client_for(cloud) as client:
        job_id = await client.ims.export_image(IMAGE_ID, ExportImageRequest(**page))
    assert job_id == "edc89b490d7d4392898e19b2deb34797"
    assert cloud.body() == page


async def test_get_quota(cloud: Cloud) -> None:
    cloud.on("GET", "/v1/cloudimages/quota", 200, load("ims_querying_the_image_quota.response.json"))
    async with client_for(cloud) as client:
        quota = await client.ims.get_quota()
    assert quota.resources[0].quota == 20


# ----------------------------------------------------------------------------------- errors, transport


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_a_retryable_server_error(cloud: Cloud, status: int) -> None:
    cloud.routes[("GET", "/v1/cloudimages/quota")] = lambda r: httpx.Response(status, text="upstream down")
    async with client_for(cloud) as client:
        with pytest.raises(ServerError) as info:
            await client.ims.get_quota()
    assert info.value.retryable
    assert info.value.status == status


async def test_unreadable_success_body(cloud: Cloud) -> None:
    cloud.routes[("GET", "/v1/cloudimages/quota")] = lambda r: httpx.Response(200, text="<html>portal</html>")
    async with client_for(cloud) as client:
        with pytest.raises(UnexpectedResponseError):
            await client.ims.get_quota()


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectTimeout("timed out"),
        httpx.RemoteProtocolError("peer closed"),
    ],
)
async def test_transport_failures_become_transport_errors(exc: httpx.HTTPError) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    async with client_for(Cloud(), token=_token()) as client:
        client._http._transport = httpx.MockTransport(fail)  # the injected seam, swapped per case
        with pytest.raises(TransportError) as info:
            await client.ims.get_quota()
    assert info.value.retryable
    assert info.value.url == f"{IMS}/v1/cloudimages/quota"
    assert isinstance(info.value.__cause__, httpx.HTTPError)


async def test_nothing_at_the_local_clouds_address_says_how_to_start_it() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    local = ImsflowSettings(_env_file=None, profile="local", project_id=PROJECT_ID)  # its default endpoints
    elsewhere = make_settings(project_id=PROJECT_ID)
    hints = []
    refused = httpx.MockTransport(refuse)
    for settings in (local, elsewhere):
        async with CloudClient(settings, auth=TokenAuth(_token()), transport=refused) as c:
            with pytest.raises(TransportError) as info:
                await c.ims.get_quota()
        hints.append(info.value.hint)
    assert "start the local cloud with `imsflow cloud --seed localcloud/demo_seed.yaml`" in (hints[0] or "")
    assert hints[1] == TransportError.hint, "a real endpoint gets the network advice"


async def test_token_refresh_through_the_client(cloud: Cloud) -> None:
    from .conftest import make_token

    sent: list[str] = []

    def quota(request: httpx.Request) -> httpx.Response:
        # The auth flow resends the same Request object, so record the header as it was sent.
        sent.append(request.headers["X-Auth-Token"])
        if request.headers["X-Auth-Token"] == "stale":
            return httpx.Response(
                401, json={"error": {"code": "IMG.0087", "message": "The token is incorrect."}}
            )
        return httpx.Response(200, json=load("ims_querying_the_image_quota.response.json"))

    cloud.routes[("GET", "/v1/cloudimages/quota")] = quota
    refreshed: list[IamToken] = []

    async def refresh() -> IamToken:
        refreshed.append(make_token("fresh"))
        return refreshed[-1]

    client = CloudClient.from_settings(
        make_settings(project_id=PROJECT_ID),
        token=make_token("stale"),
        refresh=refresh,
        transport=cloud.transport,
    )
    async with client:
        await client.ims.get_quota()
    assert sent == ["stale", "fresh"]
    assert len(refreshed) == 1


async def test_token_rejected_twice_raises(cloud: Cloud) -> None:
    from .conftest import make_token

    cloud.on(
        "GET",
        "/v1/cloudimages/quota",
        401,
        {"error": {"code": "IMG.0087", "message": "The token is incorrect."}},
    )

    async def refresh() -> IamToken:
        return make_token("also-bad")

    client = CloudClient.from_settings(
        make_settings(), token=make_token(), refresh=refresh, transport=cloud.transport
    )
    async with client:
        with pytest.raises(TokenInvalidError):
            await client.ims.get_quota()
    assert len(cloud.requests) == 2


async def test_from_settings_with_aksk_signs_and_resolves_the_project(cloud: Cloud) -> None:
    cloud.on("GET", "/v3/projects", 200, {"projects": [{"id": PROJECT_ID, "name": "eu-de"}]})
    cloud.on("GET", "/v1/cloudimages/quota", 200, load("ims_querying_the_image_quota.response.json"))
    settings = make_settings(access_key="AK0123456789", secret_key="SK-secret-0123456789")
    client = CloudClient.from_settings(settings, token=None, transport=cloud.transport)
    assert isinstance(client.auth, AkSkAuth)
    async with client:
        await client.ims.get_quota()
    projects, quota = cloud.requests
    assert projects.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=AK0123456789, SignedHeaders=")
    assert "X-Project-Id" not in projects.headers
    assert quota.headers["X-Project-Id"] == PROJECT_ID
    assert "x-project-id" in quota.headers["Authorization"]
    assert "X-Auth-Token" not in quota.headers


async def test_from_settings_without_token_can_only_log_in(cloud: Cloud) -> None:
    cloud.on(
        "POST",
        "/v3/auth/tokens",
        201,
        load("iam_obtaining_a_user_token.response.json"),
        headers={"X-Subject-Token": TOKEN_VALUE},
    )
    async with CloudClient.from_settings(make_settings(), token=None, transport=cloud.transport) as client:
        await client.iam.create_token(domain="d", username="u", password=SecretStr("p"), project_name="eu-de")
        with pytest.raises(ConfigError, match="no token"):
            await client.ims.get_quota()
    assert len(cloud.requests) == 1


async def test_timeouts_and_tls_come_from_the_settings() -> None:
    client = CloudClient(make_settings(connect_timeout=3, read_timeout=7))
    async with client:
        timeout = client._http.timeout
        assert (timeout.connect, timeout.read) == (3, 7)
    assert "SecretStr" not in repr(client)
