"""The client speaks only the documented API forms: tag queries, job-query errors, image 404s, several ECS
tags, the per-profile IMS job path, and request IDs in every error it shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from imsflow.auth import TokenAuth
from imsflow.client import CloudClient, login
from imsflow.errors import (
    AuthenticationError,
    ImageNotFoundError,
    InvalidRequestError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    NotFoundError,
    ServerError,
    UnexpectedResponseError,
    parse_error_response,
)
from imsflow.models import CreateImageFromEcsRequest, Image, ImageListQuery, ImsJob
from imsflow.polling import PollPolicy, wait_for_job
from imsflow.settings import ImsflowSettings
from tests.support import LAYOUTS, WEB_1, endpoint_layout, make_cloud, settings_for, transport_for

from .conftest import IMAGE_ID, PROJECT_ID, load, make_settings, make_token

JOB_ID = "9a175ac792fa12d20193002100dd2762"
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, settings: ImsflowSettings | None = None) -> CloudClient:
    return CloudClient(
        settings or make_settings(project_id=PROJECT_ID),
        auth=TokenAuth(make_token()),
        transport=httpx.MockTransport(handler),
    )


def answer(status: int, body: Any = None, **kw: Any) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, **kw)
        if isinstance(body, str):
            return httpx.Response(status, text=body, **kw)
        return httpx.Response(status, json=body, **kw)

    return handle


# ------------------------------------------------------------------------------------------ 1. tag queries


def test_tag_queries_use_key_equals_value() -> None:
    # querying_images.rst, row ``tag``: "query the tag using tag=a=b", also for tags created as "a.b".
    query = ImageListQuery.tagged("imsflow-request", "0123abcd", imagetype="private")
    assert query.to_params() == {"__imagetype": "private", "tag": "imsflow-request=0123abcd"}


@pytest.mark.parametrize("tag", ["imsflow-request.0123abcd", "=value", "key"])
def test_undocumented_tag_filters_are_refused(tag: str) -> None:
    with pytest.raises(ValueError, match="Key=Value") as info:
        ImageListQuery(tag=tag)
    assert isinstance(info.value.errors()[0]["ctx"]["error"], InvalidRequestError)  # type: ignore[attr-defined]


def test_image_tags_read_in_both_listed_forms() -> None:
    image = Image(id=IMAGE_ID, tags=["imsflow-request.abc", "imsflow-instance=i-1", "bare"])
    assert image.tag_map == {"imsflow-request": "abc", "imsflow-instance": "i-1"}


# ------------------------------------------------------------------------------ 2. unknown or expired job

IMG_0023 = {"error": {"code": "IMG.0023", "message": "An exception occurred during task query."}}
COMMON_0011 = {"code": "Common.0011", "message": "Failed to query system tasks."}


@pytest.mark.parametrize("body", [IMG_0023, COMMON_0011, {"error": COMMON_0011}])
@pytest.mark.parametrize("service", ["ims", "ecs"])
async def test_job_query_errors_mean_job_not_found(service: str, body: dict[str, Any]) -> None:
    # One base URL: the other service may answer; per-service hosts: each its own code. Same outcome.
    async with client(answer(400, body, headers={"X-Request-Id": "req-0023"})) as c:
        api = c.ims if service == "ims" else c.ecs
        with pytest.raises(JobNotFoundError) as info:
            await api.get_job(JOB_ID)
    assert not info.value.retryable
    assert info.value.code == body.get("code", body.get("error", {}).get("code"))
    assert "[request id req-0023]" in str(info.value)


def test_img_0023_elsewhere_stays_a_server_error() -> None:
    # Outside a job query (where it is not documented) the code keeps its registry class.
    request = httpx.Request("GET", "https://ims.example/v2/cloudimages")
    error = parse_error_response(httpx.Response(400, json=IMG_0023, request=request))
    assert isinstance(error, ServerError)
    assert not isinstance(error, JobNotFoundError)


# ---------------------------------------------------------------------------------------- 3. image gone


@pytest.mark.parametrize(
    "handler",
    [
        answer(404),  # the Glance-native pages: 404, no body
        answer(
            404, "<html><body><h1>404 Not Found</h1></body></html>", headers={"Content-Type": "text/html"}
        ),
        answer(404, {"error": {"code": "IMG.9999", "message": "No image found"}}),
        answer(404, {"itemNotFound": {"message": "Image not found", "code": 404}}),
    ],
    ids=["no-body", "html", "other-code", "glance-body"],
)
async def test_image_404_is_image_not_found_whatever_the_body(handler: Handler) -> None:
    async with client(handler) as c:
        with pytest.raises(ImageNotFoundError) as shown:
            await c.ims.get_image(IMAGE_ID)
        with pytest.raises(ImageNotFoundError) as deleted:
            await c.ims.delete_image(IMAGE_ID)
    assert shown.value.status == deleted.value.status == 404
    assert f"/v2/images/{IMAGE_ID}" in shown.value.url


@pytest.mark.parametrize(
    "body",
    [
        {
            "error_msg": "The API does not exist or has not been published in the environment.",
            "error_code": "APIG.0101",
            "request_id": "0f" * 16,
        },
        {"error": {"code": "APIG.0101", "message": "The API does not exist"}},
    ],
    ids=["gateway-body", "nested"],
)
async def test_a_gateway_404_is_not_an_image_gone(body: dict[str, Any]) -> None:
    """The gateway's "no such API" (a wrong endpoint or path) must never read as "already deleted"."""
    async with client(answer(404, body)) as c:
        with pytest.raises(NotFoundError) as shown:
            await c.ims.get_image(IMAGE_ID)
        with pytest.raises(NotFoundError) as deleted:
            await c.ims.delete_image(IMAGE_ID)
    for error in (shown.value, deleted.value):
        assert not isinstance(error, ImageNotFoundError)
        assert error.code == "APIG.0101"
        assert "IMSFLOW_IMS_URL" in error.hint


# ---------------------------------------------------------------------------------- 4. ECS: several tags


async def test_several_tags_query_one_and_filter_the_rest() -> None:
    servers = [
        {"id": "s1", "name": "web-1", "status": "SHUTOFF", "tags": ["a=1", "b=2"]},
        {"id": "s2", "name": "web-2", "status": "SHUTOFF", "tags": ["a=1"]},
        {"id": "s3", "name": "w3b-3", "status": "SHUTOFF", "tags": ["a=1", "b=2", "c=3"]},
    ]
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"count": len(servers), "servers": servers})

    async with client(handle) as c:
        both = [s.id async for s in c.ecs.iter_servers(tags=["a=1", "b=2"])]
        one = [s.id async for s in c.ecs.iter_servers(tags="a=1")]
        # The API's fuzzy name match reads "." as any character ("w3b" matches "web"); ours is a substring.
        named = [s.id async for s in c.ecs.iter_servers(name="web")]
    assert both == ["s1", "s3"]
    assert one == ["s1", "s2", "s3"]
    assert named == ["s1", "s2"]
    assert [r.url.params.get("tags") for r in seen] == ["a=1", "a=1", None]


# --------------------------------------------------------------------------- 5. per-profile IMS job path


def test_ims_job_api_defaults_by_profile() -> None:
    assert make_settings(profile="huaweicloud").effective_ims_job_api == "cloudimages-job"
    assert make_settings(profile="otc").effective_ims_job_api == "project-jobs"
    assert make_settings(profile="local").effective_ims_job_api == "project-jobs"
    chosen = make_settings(profile="otc", ims_job_api="cloudimages-job")
    assert chosen.effective_ims_job_api == "cloudimages-job"
    assert chosen.masked()["ims_job_api"] == "cloudimages-job"
    assert make_settings(profile="huaweicloud").masked()["ims_job_api"] == "cloudimages-job"
    with pytest.raises(ValueError, match="ims_job_api"):
        make_settings(ims_job_api="v2")


@pytest.mark.parametrize(
    ("profile", "path"),
    [
        ("huaweicloud", f"/v1/cloudimages/job/{JOB_ID}"),
        ("otc", f"/v1/{PROJECT_ID}/jobs/{JOB_ID}"),
    ],
)
async def test_get_job_uses_the_profiles_path(profile: str, path: str) -> None:
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        body = load("ims_querying_job.response.create_image_by_instance.json")
        return httpx.Response(200, json=body, headers={"X-Request-Id": "req-job"})

    async with client(handle, make_settings(profile=profile, project_id=PROJECT_ID)) as c:
        job = await c.ims.get_job(JOB_ID)
    assert paths == [path]
    assert job.image_id == IMAGE_ID
    assert job.request_id == "req-job"


# ------------------------------------------------------------------------------------------ 6. request IDs


async def test_gateway_body_request_id_is_shown() -> None:
    body = {
        "error_msg": "Incorrect IAM authentication information",
        "error_code": "APIG.0301",
        "request_id": "gw-1",
    }
    async with client(answer(401, body)) as c:
        with pytest.raises(AuthenticationError, match=r"\[request id gw-1\]"):
            await c.ims.get_quota()


async def test_unreadable_success_body_carries_the_request_id() -> None:
    async with client(answer(200, {"nope": 1}, headers={"X-Request-Id": "req-bad"})) as c:
        with pytest.raises(UnexpectedResponseError) as info:
            await c.ims.get_quota()
    assert info.value.request_id == "req-bad"
    assert "[request id req-bad]" in str(info.value)


def _job(status: str, request_id: str | None) -> ImsJob:
    job = ImsJob(job_id=JOB_ID, status=status, error_code="IMG.0014" if status == "FAIL" else None)
    job._request_id = request_id
    return job


async def _no_sleep(seconds: float) -> None:
    return None


async def test_job_failure_names_the_last_job_query_request_id() -> None:
    async def fetch() -> ImsJob:
        return _job("FAIL", "req-fail")

    with pytest.raises(JobFailedError) as info:
        await wait_for_job(fetch, job_id=JOB_ID, timeout=60, sleep=_no_sleep, policy=PollPolicy())
    assert info.value.request_id == "req-fail"
    assert str(info.value).endswith("[request id req-fail]")


async def test_job_timeout_names_the_last_job_query_request_id() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async def fetch() -> ImsJob:
        return _job("RUNNING", "req-run")

    with pytest.raises(JobTimeoutError) as info:
        await wait_for_job(fetch, job_id=JOB_ID, timeout=10, sleep=sleep, clock=lambda: now[0])
    assert "still RUNNING" in str(info.value)
    assert str(info.value).endswith("[request id req-run]")


def test_job_errors_without_a_request_id_read_as_before() -> None:
    error = JobFailedError(job_id="j", error_code=None, fail_reason="x")
    assert str(error) == "job j failed: no error code: x"


# ------------------------------------------------- the same against the in-process local cloud, both layouts


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(
    ("job_api", "operation"),
    [("project-jobs", "ims.show_job"), ("cloudimages-job", "ims.show_job_progress")],
)
async def test_local_cloud_job_paths_and_unknown_jobs(layout: str, job_api: str, operation: str) -> None:
    cloud = make_cloud()
    network = transport_for(cloud)
    with endpoint_layout(layout):
        settings = settings_for(ims_job_api=job_api)
    token = await login(settings, transport=network)
    async with CloudClient.from_settings(settings, token=token, transport=network) as c:
        job_id = await c.ims.create_image_from_ecs(
            CreateImageFromEcsRequest(name="web-1-x", instance_id=WEB_1)
        )
        job = await c.ims.get_job(job_id)
        assert job.job_id == job_id
        assert cloud.stats()[operation] == 1
        with pytest.raises(JobNotFoundError):
            await c.ims.get_job("f" * 32)
        with pytest.raises(JobNotFoundError):
            await c.ecs.get_job("f" * 32)


@pytest.mark.parametrize("filters", [{"sort_key": "colour"}, {"isregistered": False}])
def test_image_list_filters_outside_the_page_are_refused(filters: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ImageListQuery(**filters)
    assert ImageListQuery(isregistered=True, sort_key="created_at").to_params() == {
        "__isregistered": "true",
        "sort_key": "created_at",
    }
