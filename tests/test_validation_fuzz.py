"""The client's IMS rules and the local cloud's, written independently, agree on generated input.

The client side is ``imsflow.validation`` through the request model (and the flow's parameter form); the
cloud side is the local cloud answering ``POST /v2/cloudimages/action`` over HTTP in-process. The cloud
checks the body before it looks for the ECS, so an unknown instance ID makes IMG.0005 mean "every field
passed" without creating anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.create_image import CreateImageParams
from imsflow.errors import InvalidRequestError
from imsflow.models import CreateImageFromEcsRequest, build_request
from imsflow.validation import NAME_PATTERN
from localcloud import LocalCloud
from tasks.image import request_key, with_imsflow_tags
from tests.support import PASSWORD, PROJECT_ID, make_cloud

UNKNOWN_ECS = "00000000-0000-4000-8000-00000000dead"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Characters near the rules' edges: allowed ones, separators, line breaks, brackets, non-ASCII.
EDGY = "aZ09._- =\n\r\t<>/é中"
names = st.one_of(
    st.from_regex(NAME_PATTERN, fullmatch=True),
    st.text(alphabet=EDGY, max_size=130),
    st.integers(126, 130).map(lambda n: "n" * n),
)
descriptions = st.one_of(
    st.text(alphabet=EDGY, max_size=60),
    st.text(max_size=40),
    st.integers(1020, 1030).map(lambda n: "d" * n),
)
tag_parts = st.one_of(
    st.text(alphabet="aZ09_-. é\n", max_size=45), st.integers(34, 45).map(lambda n: "k" * n)
)
dotted_tags = st.lists(st.builds(lambda k, v: f"{k}.{v}", tag_parts, tag_parts) | tag_parts, max_size=12)
image_tags = st.lists(st.fixed_dictionaries({"key": tag_parts, "value": tag_parts}), max_size=12)


class Cloud:
    """The local cloud, a token, and one event loop for all examples of a test."""

    def __init__(self) -> None:
        self.cloud: LocalCloud = make_cloud()
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.cloud.app), base_url="http://127.0.0.1:8780"
        )
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": "alice", "password": PASSWORD, "domain": {"name": "demo"}}},
                },
                "scope": {"project": {"id": PROJECT_ID}},
            }
        }
        response = self.loop.run_until_complete(self.http.post("/v3/auth/tokens", json=body))
        self.headers = {"X-Auth-Token": response.headers["X-Subject-Token"]}

    def verdict(self, body: dict[str, Any]) -> str:
        """``"ok"`` when every field passed (the cloud got as far as looking up the ECS), else the code."""
        response = self.loop.run_until_complete(
            self.http.post("/v2/cloudimages/action", json=body, headers=self.headers)
        )
        code = str(response.json()["error"]["code"])
        return "ok" if code == "IMG.0005" else code

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    c = Cloud()
    yield c
    assert c.cloud.stats().get("ims.create_image", 0) > 0
    assert not c.cloud.ims.images, "the fuzz must never create an image"
    c.close()


def client_verdict(**fields: Any) -> CreateImageFromEcsRequest | None:
    try:
        return build_request(CreateImageFromEcsRequest, **fields)
    except InvalidRequestError:
        return None


def assert_agree(cloud: Cloud, fields: dict[str, Any]) -> None:
    request = client_verdict(**fields)
    raw = cloud.verdict(fields)
    assert (request is not None) == (raw == "ok"), (
        f"client {'accepts' if request else 'refuses'}, cloud {raw}"
    )
    if request is not None:
        # What the client would really send (trimmed, normalised) must pass too.
        assert cloud.verdict(request.to_body()) == "ok"


@FUZZ
@given(name=names)
def test_names_agree(cloud: Cloud, name: str) -> None:
    assert_agree(cloud, {"name": name, "instance_id": UNKNOWN_ECS})


@FUZZ
@given(description=descriptions)
def test_descriptions_agree(cloud: Cloud, description: str) -> None:
    assert_agree(cloud, {"name": "img", "instance_id": UNKNOWN_ECS, "description": description})


@FUZZ
@given(tags=dotted_tags)
def test_dotted_tags_agree(cloud: Cloud, tags: list[str]) -> None:
    assert_agree(cloud, {"name": "img", "instance_id": UNKNOWN_ECS, "tags": tags})


@FUZZ
@given(tags=image_tags)
def test_image_tags_agree(cloud: Cloud, tags: list[dict[str, str]]) -> None:
    assert_agree(cloud, {"name": "img", "instance_id": UNKNOWN_ECS, "image_tags": tags})


@FUZZ
@given(tags=dotted_tags, more=image_tags)
def test_tags_and_image_tags_together_agree(
    cloud: Cloud, tags: list[str], more: list[dict[str, str]]
) -> None:
    assert_agree(cloud, {"name": "img", "instance_id": UNKNOWN_ECS, "tags": tags, "image_tags": more})


@FUZZ
@given(
    instance_id=st.one_of(
        st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.text(max_size=40)
    ),
    enterprise_project_id=st.one_of(st.none(), st.just("0"), st.uuids().map(str), st.text(max_size=40)),
)
def test_every_id_the_client_accepts_reaches_the_ecs_lookup(
    cloud: Cloud, instance_id: str, enterprise_project_id: str | None
) -> None:
    # The cloud takes any string and answers "no such ECS" (IMG.0005); the client is stricter (a UUID, and
    # "0" or a UUID for the enterprise project).
    request = client_verdict(name="img", instance_id=instance_id, enterprise_project_id=enterprise_project_id)
    if request is not None:
        assert cloud.verdict(request.to_body()) == "ok"


@FUZZ
@given(
    name=names,
    description=descriptions,
    tags=st.lists(st.builds(lambda k, v: f"{k}={v}", tag_parts, tag_parts), max_size=12),
)
def test_what_the_flow_form_accepts_the_cloud_accepts(
    cloud: Cloud, name: str, description: str, tags: list[str]
) -> None:
    # The flow's parameter form (the Prefect UI) plus the tags imsflow adds must still make a valid request.
    try:
        params = CreateImageParams(instance_id=UNKNOWN_ECS, name=name, description=description, tags=tags)
    except ValueError:
        return
    request = with_imsflow_tags(params.to_request(), request_key(params.instance_id, params.name))
    assert cloud.verdict(request.to_body()) == "ok"
