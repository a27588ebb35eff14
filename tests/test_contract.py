"""Contract: the local cloud answers in the shape the API pages document, and the client's models read it.

The documented examples (tests/fixtures/api, copied verbatim from the pages) are the reference: every field a
documented response example carries, the local cloud's answer to the same call carries too, and the answer
parses into the same pydantic model the client uses against the real cloud.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imsflow.models import (
    EcsJob,
    Image,
    ImageList,
    ImsJob,
    ProjectList,
    QuotaResponse,
    ServerDetail,
    ServerPage,
)
from localcloud import LocalCloud
from tests.support import DB_1, PASSWORD, PROJECT_ID, WEB_1, make_cloud

FIXTURES = Path(__file__).parent / "fixtures" / "api"

# Fields of the page examples that belong to features the local cloud does not emulate (and says so).
NOT_EMULATED = {
    "ims_querying_image_details.response.json": frozenset(
        {"__lazyloading", "__support_kvm", "__support_xen"}
    ),
}


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def missing_keys(
    documented: dict[str, Any], actual: dict[str, Any], skip: frozenset[str] = frozenset()
) -> set[str]:
    return {key for key in documented if key not in actual and key not in skip}


@pytest.fixture
async def api() -> AsyncIterator[tuple[LocalCloud, httpx.AsyncClient]]:
    cloud = make_cloud(buckets=["exports"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cloud.app), base_url="http://127.0.0.1:8780"
    ) as http:
        response = await http.post(
            "/v3/auth/tokens",
            json={
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {"name": "alice", "password": PASSWORD, "domain": {"name": "demo"}}
                        },
                    },
                    "scope": {"project": {"name": "eu-de"}},
                }
            },
        )
        assert response.status_code == 201
        http.headers["X-Auth-Token"] = response.headers["X-Subject-Token"]
        yield cloud, http


async def _image(cloud: LocalCloud, http: httpx.AsyncClient) -> tuple[str, str]:
    response = await http.post(
        "/v2/cloudimages/action", json={"name": "contract", "instance_id": WEB_1, "tags": ["aaa.111"]}
    )
    assert response.status_code == 200
    job_id: str = response.json()["job_id"]
    cloud.clock.advance(3600)  # type: ignore[attr-defined]
    job = (await http.get(f"/v1/{PROJECT_ID}/jobs/{job_id}")).json()
    image_id: str = job["entities"]["image_id"]
    return job_id, image_id


async def test_token_response_has_the_documented_fields(api: tuple[LocalCloud, httpx.AsyncClient]) -> None:
    _, http = api
    documented = example("iam_obtaining_a_user_token.response.json")["token"]
    response = await http.post(
        "/v3/auth/tokens", json=example("iam_obtaining_a_user_token.request.json") | {}, headers={}
    )
    # The page's request names an account we do not seed; the shape check uses our own login.
    assert response.status_code in (201, 401)
    ours = await http.post(
        "/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": "alice", "password": PASSWORD, "domain": {"name": "demo"}}},
                },
                "scope": {"project": {"name": "eu-de"}},
            }
        },
    )
    token = ours.json()["token"]
    # The page's example is a domain-scoped token; ours is project-scoped, which has "project" instead.
    assert missing_keys(documented, token, frozenset({"domain"})) == set()
    assert token["project"]["id"] == PROJECT_ID


async def test_projects(api: tuple[LocalCloud, httpx.AsyncClient]) -> None:
    _, http = api
    body = (await http.get("/v3/projects", params={"name": "eu-de"})).json()
    assert missing_keys(example("iam_querying_projects.response.json"), body) == set()
    projects = ProjectList.model_validate(body).projects
    assert [p.id for p in projects] == [PROJECT_ID]


async def test_server_details_and_list(api: tuple[LocalCloud, httpx.AsyncClient]) -> None:
    _, http = api
    body = (await http.get(f"/v1/{PROJECT_ID}/cloudservers/{DB_1}")).json()
    documented = example("ecs_querying_details_about_an_ecs.response.json")["server"]
    assert missing_keys(documented, body["server"]) == set()
    assert ServerDetail.model_validate(body).server.status == "ACTIVE"

    page = (await http.get(f"/v1/{PROJECT_ID}/cloudservers/detail", params={"limit": 1})).json()
    assert missing_keys(example("ecs_listing_details_about_ecss.response.json"), page) == set()
    parsed = ServerPage.model_validate(page)
    assert parsed.count == 2
    assert len(parsed.servers) == 1


async def test_ecs_stop_job(api: tuple[LocalCloud, httpx.AsyncClient]) -> None:
    cloud, http = api
    response = await http.post(
        f"/v1/{PROJECT_ID}/cloudservers/action", json=example("ecs_stopping_ecss_in_a_batch.request.json")
    )
    # The page's example stops a server we do not have; stop ours with the same body shape.
    assert response.status_code in (200, 404)
    response = await http.post(
        f"/v1/{PROJECT_ID}/cloudservers/action", json={"os-stop": {"type": "SOFT", "servers": [{"id": DB_1}]}}
    )
    assert missing_keys(example("ecs_stopping_ecss_in_a_batch.response.json"), response.json()) == set()
    cloud.clock.advance(60)  # type: ignore[attr-defined]
    job = (await http.get(f"/v1/{PROJECT_ID}/jobs/{response.json()['job_id']}")).json()
    assert missing_keys(example("ecs_querying_job_execution_status.response.json"), job) == set()
    assert EcsJob.model_validate(job).status == "SUCCESS"


async def test_image_job_image_and_list(api: tuple[LocalCloud, httpx.AsyncClient]) -> None:
    cloud, http = api
    job_id, image_id = await _image(cloud, http)

    job = (await http.get(f"/v1/{PROJECT_ID}/jobs/{job_id}")).json()
    documented_job = example("ims_querying_job.response.create_image_by_instance.json")
    assert missing_keys(documented_job, job) == set()
    assert missing_keys(documented_job["entities"], job["entities"]) == set()
    parsed_job = ImsJob.model_validate(job)
    assert parsed_job.status == "SUCCESS"
    assert parsed_job.image_id == image_id

    image = (await http.get(f"/v2/images/{image_id}")).json()
    assert missing_keys(example("ims_querying_image_details.response.json"), image) == set()
    assert Image.model_validate(image).status == "active"

    listed = (await http.get("/v2/cloudimages", params={"__imagetype": "private"})).json()
    assert missing_keys(example("ims_querying_images.response.json"), listed) == set()
    assert [i.id for i in ImageList.model_validate(listed).images] == [image_id]


async def test_quota(api: tuple[LocalCloud, httpx.AsyncClient]) -> None:
    _, http = api
    body = (await http.get("/v1/cloudimages/quota")).json()
    assert missing_keys(example("ims_querying_the_image_quota.response.json"), body) == set()
    assert QuotaResponse.model_validate(body).quotas.resources


async def test_export_job(api: tuple[LocalCloud, httpx.AsyncClient]) -> None:
    cloud, http = api
    _, image_id = await _image(cloud, http)
    response = await http.post(
        f"/v1/cloudimages/{image_id}/file",
        json={"bucket_url": "exports:contract.qcow2", "file_format": "qcow2"},
    )
    assert response.status_code == 200
    assert missing_keys(example("ims_exporting_an_image.response.json"), response.json()) == set()
    cloud.clock.advance(3600)  # type: ignore[attr-defined]
    job = (await http.get(f"/v1/{PROJECT_ID}/jobs/{response.json()['job_id']}")).json()
    assert job["job_type"] == example("ims_querying_job.response.native_export.json")["job_type"]
    assert ImsJob.model_validate(job).status == "SUCCESS"


async def test_error_bodies_have_the_documented_shape(api: tuple[LocalCloud, httpx.AsyncClient]) -> None:
    _, http = api
    documented = example("ims_error_codes.response.json")
    response = await http.post("/v2/cloudimages/action", json={"name": "x", "instance_id": DB_1})
    assert response.status_code == 400
    body = response.json()
    assert missing_keys(documented, body) == set()
    assert missing_keys(documented["error"], body["error"]) == set()
    assert body["error"]["code"] == "IMG.0008"
