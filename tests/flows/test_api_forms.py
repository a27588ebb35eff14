"""The flows on documented API forms only: a stale submission record, an image gone with a bare 404, a fleet
selected by several tags, and failure messages that carry the cloud's request ID; and the flows' forms (their
parameter schemas) as a person fills them in the Prefect UI."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prefect.utilities.callables import parameter_schema, parameter_schema_from_entrypoint
from prefect.utilities.schema_tools.validation import validate
from pydantic import ValidationError

import runtime
from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from flows.fleet import FleetParams, FleetResult, create_images_for_fleet
from flows.lifecycle import DeleteImageParams, PruneParams, delete_image, export_image, prune_images
from flows.replication import replicate_image
from imsflow.validation import NAME_RULE, TAG_PARAM_RULE, UUID_RULE
from localcloud.seed import FaultRuleSeed
from runtime.records import SUBMISSIONS, Submission
from tasks.image import REQUEST_TAG, request_key
from tests.support import (
    PROJECT_ID,
    WEB_1,
    CloudNetwork,
    cloud_runtime,
    make_cloud,
    seed_data,
    settings_for,
)

UNKNOWN_JOB = "f" * 32
IMAGE_ID = "1a2b3c4d-0000-4000-8000-000000000404"


async def _record_unknown_job(key: str) -> None:
    # A submission record from long ago: its job has expired (or never was on this cloud).
    record = Submission(request_key=key, job_id=UNKNOWN_JOB, submitted_at=datetime.now(UTC))
    await SUBMISSIONS.put(key, record)


def _queries_of_the_unknown_job(network: CloudNetwork) -> int:
    return len(network.calls_to("GET", f"/jobs/{UNKNOWN_JOB}")) + len(
        network.calls_to("GET", f"/job/{UNKNOWN_JOB}")
    )


# --------------------------------------------------------------------------------- stale record, unknown job


async def test_a_record_of_an_unknown_job_moves_on_to_a_new_submission() -> None:
    cloud = make_cloud()
    network = CloudNetwork(cloud)
    params = CreateImageParams(instance_id=WEB_1, name="web-1-stale")
    await _record_unknown_job(request_key(WEB_1, params.name))
    with cloud_runtime(cloud, network):
        result = await create_image_from_ecs(params)
        assert isinstance(result, CreateImageResult)

    assert result.how == "submitted"
    assert cloud.ims.images[result.image_id].status == "active"
    assert cloud.stats()["ims.create_image"] == 1
    # IMG.0023 (or Common.0011 on one base URL) is JobNotFoundError: asked once, never retried.
    assert _queries_of_the_unknown_job(network) == 1


async def test_a_record_of_an_unknown_job_adopts_the_tagged_image() -> None:
    name = "web-1-stale-adopt"
    key = request_key(WEB_1, name)
    image = {
        "id": IMAGE_ID,
        "name": name,
        "project": "eu-de",
        "tags": [f"{REQUEST_TAG}.{key}"],  # made in the "Key.Value" form, found by the "Key=Value" query
    }
    cloud = make_cloud(images=[image])
    network = CloudNetwork(cloud)
    await _record_unknown_job(key)
    with cloud_runtime(cloud, network):
        result = await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name=name))
        assert isinstance(result, CreateImageResult)

    assert result.how == "adopted"
    assert result.image_id == IMAGE_ID
    assert cloud.stats().get("ims.create_image", 0) == 0
    assert _queries_of_the_unknown_job(network) == 1


@pytest.mark.parametrize("job_api", ["project-jobs", "cloudimages-job"])
async def test_create_image_on_either_ims_job_path(job_api: str) -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud, ims_job_api=job_api):
        result = await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name=f"web-1-{job_api}"))
        assert isinstance(result, CreateImageResult)
    assert cloud.ims.images[result.image_id].status == "active"
    stats = cloud.stats()
    used, unused = (
        ("ims.show_job_progress", "ims.show_job")
        if job_api == "cloudimages-job"
        else ("ims.show_job", "ims.show_job_progress")
    )
    assert stats.get(used, 0) >= 1
    assert stats.get(unused, 0) == 0


# ------------------------------------------------------------------------------------ image gone: bare 404


IMAGE_BODY = {"id": IMAGE_ID, "name": "old-one", "status": "active"}
BARE_404 = (404, None)
HTML_404 = (404, "<html>Not Found</html>")
ACTIVE = (200, IMAGE_BODY)


def _response(answer: tuple[int, Any]) -> httpx.Response:
    status, body = answer
    if body is None:
        return httpx.Response(status)
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers={"Content-Type": "text/html"})
    return httpx.Response(status, json=body)


def _glance(gets: list[tuple[int, Any]], delete: tuple[int, Any]) -> httpx.MockTransport:
    """GET answers in turn (the last one repeats); DELETE answers ``delete``."""
    pending = list(gets)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return _response(delete)
        return _response(pending.pop(0) if len(pending) > 1 else pending[0])

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("gets", "delete", "outcome"),
    [
        ([BARE_404], (204, None), "already-gone"),
        ([HTML_404], (204, None), "already-gone"),
        ([ACTIVE], BARE_404, "already-gone"),
        ([ACTIVE, BARE_404], (204, None), "deleted"),
    ],
    ids=["gone-before", "gone-before-html", "gone-at-delete", "deleted-then-404"],
)
async def test_delete_treats_a_bare_404_as_gone(
    gets: list[tuple[int, Any]], delete: tuple[int, Any], outcome: str
) -> None:
    # AK/SK: the flow needs no IAM call, so the mock only plays IMS.
    settings = settings_for(access_key="AK", secret_key="SK", project_id=PROJECT_ID)

    async def no_sleep(seconds: float) -> None:
        return None

    transport = _glance(gets, delete)
    with runtime.use_runtime(settings_factory=lambda: settings, transport=transport, sleep=no_sleep):
        result = await delete_image(DeleteImageParams(image_id=IMAGE_ID))
    assert result.outcome == outcome


# -------------------------------------------------------------------------------------- fleet by two tags


async def test_fleet_by_two_tags_selects_only_servers_with_both() -> None:
    both = "6f1c2d7e-0000-4000-8000-000000000201"
    first_only = "6f1c2d7e-0000-4000-8000-000000000202"
    servers: list[dict[str, Any]] = [
        {"id": both, "name": "both", "project": "eu-de", "status": "SHUTOFF", "tags": ["a=1", "b=2"]},
        {"id": first_only, "name": "first", "project": "eu-de", "status": "SHUTOFF", "tags": ["a=1"]},
    ]
    cloud = make_cloud(**{**seed_data(servers=servers), "limits": {"image_quota": 50}})
    params = FleetParams(tags=["a=1", "b=2"], requests_per_second=1000)
    with cloud_runtime(cloud):
        state = await create_images_for_fleet(params, return_state=True)
    result = await state.aresult(raise_on_failure=False)
    assert isinstance(result, FleetResult)
    assert [(r.instance_id, r.outcome) for r in result.rows] == [(both, "submitted")]


# ------------------------------------------------------------------------------- request IDs in failures


async def test_failed_run_message_carries_the_request_id() -> None:
    cloud = make_cloud()
    cloud.faults.add(
        FaultRuleSeed.model_validate(
            {
                "kind": "job_fail",
                "operation": "ims.create_image",
                "error_code": "IMG.0037",
                "fail_reason": "x",
            }
        )
    )
    with cloud_runtime(cloud):
        state = await create_image_from_ecs(
            CreateImageParams(instance_id=WEB_1, name="web-1-fails"), return_state=True
        )
    assert state.is_failed()
    assert "IMG.0037" in (state.message or "")
    assert "[request id " in (state.message or "")


# ---------------------------------------------------------------- the forms a person fills in the Prefect UI

FLOWS: dict[str, Callable[..., Any]] = {
    "create-image-from-ecs": create_image_from_ecs,
    "create-images-for-fleet": create_images_for_fleet,
    "delete-image": delete_image,
    "export-image": export_image,
    "prune-images": prune_images,
    "replicate-image": replicate_image,
}
#: The title of each flow's group of parameters (Prefect would title it "params").
GROUPS = {
    "create-image-from-ecs": "Image",
    "delete-image": "Image",
    "export-image": "Export",
    "prune-images": "Retention",
    "create-images-for-fleet": "Fleet",
    "replicate-image": "Replication",
}
#: Words that keep their capitals inside a sentence-case title.
ACRONYMS = re.compile(r"^\(?(ID|IDs|ECS|ECSs|OBS|API|IMS|UUID)\)?$")


def _form(flow_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flow's parameter schema (as the UI gets it) and its params model's definition."""
    schema = parameter_schema(FLOWS[flow_name]).model_dump_for_openapi()
    ref = schema["properties"]["params"]["$ref"].rsplit("/", 1)[-1]
    return schema, schema["definitions"][ref]


def _fields(flow_name: str) -> list[tuple[str, dict[str, Any]]]:
    schema, model = _form(flow_name)
    fields = [(f"params.{name}", prop) for name, prop in model["properties"].items()]
    return [*fields, ("credentials_block", schema["properties"]["credentials_block"])]


def _sentence_case(title: str) -> bool:
    first, *rest = title.split()
    return first[0].isupper() and all(word.islower() or ACRONYMS.match(word) for word in rest)


@pytest.mark.parametrize("flow_name", FLOWS)
def test_every_field_has_a_sentence_case_title_and_a_description(flow_name: str) -> None:
    for name, prop in _fields(flow_name):
        title, description = prop.get("title", ""), prop.get("description", "")
        assert title, name
        assert _sentence_case(title), f"{name}: title {title!r}"
        assert description, name
        assert description[0].isupper(), f"{name}: description {description!r}"
        assert not description.endswith(" "), name
        # No developer's note: the form is for operators.
        for jargon in ("model", "Prefect UI: it", "pydantic", "None", "secret"):
            assert jargon not in description, f"{name}: {description!r}"


@pytest.mark.parametrize("flow_name", FLOWS)
def test_no_field_offers_a_none_switch(flow_name: str) -> None:
    # An optional field is its type alone (empty: not set), never `anyOf` with null nor a null default:
    # the UI renders those as a "str | None" switch and 'Property is type "None"'.
    for name, prop in _fields(flow_name):
        assert "anyOf" not in prop, name
        assert "oneOf" not in prop, name
        assert not isinstance(prop.get("type"), list), name
        assert prop.get("default", "") is not None, name


@pytest.mark.parametrize("flow_name", FLOWS)
def test_the_params_group_is_titled_for_people(flow_name: str) -> None:
    schema, model = _form(flow_name)
    params = schema["properties"]["params"]
    # The UI merges the referenced model under the property's own keys.
    merged = {**model, **{k: v for k, v in params.items() if k != "$ref"}}
    assert model["title"] == GROUPS[flow_name]
    assert model["description"][0].isupper()
    assert merged["title"] == GROUPS[flow_name]
    assert "definitions" not in model


@pytest.mark.parametrize("flow_name", FLOWS)
def test_the_schema_prefect_deploy_stores_is_the_flows(flow_name: str) -> None:
    # `prefect deploy` builds the schema from the source, not from the imported flow.
    entrypoint = {
        "create-image-from-ecs": "flows/create_image.py:create_image_from_ecs",
        "delete-image": "flows/lifecycle.py:delete_image",
        "export-image": "flows/lifecycle.py:export_image",
        "prune-images": "flows/lifecycle.py:prune_images",
        "create-images-for-fleet": "flows/fleet.py:create_images_for_fleet",
        "replicate-image": "flows/replication.py:replicate_image",
    }[flow_name]
    from_source = parameter_schema_from_entrypoint(entrypoint).model_dump_for_openapi()
    assert from_source == parameter_schema(FLOWS[flow_name]).model_dump_for_openapi()


@pytest.mark.parametrize("flow_name", FLOWS)
@pytest.mark.parametrize("credentials_block", ["", None])
def test_an_empty_form_and_a_chunk_runs_parameters_pass_the_schema(
    flow_name: str, credentials_block: str | None
) -> None:
    # What the UI sends for a field left empty ("") and what Python callers and a fleet's chunk runs send
    # (null for an unset optional field) both pass the server's check of the deployment's schema.
    schema = parameter_schema(FLOWS[flow_name]).model_dump_for_openapi()
    params: dict[str, Any] = {
        "create-image-from-ecs": {"instance_id": WEB_1, "name": "web-1", "idempotency_key": None},
        "create-images-for-fleet": FleetParams(instance_ids=[WEB_1]).model_dump(mode="json"),
        "delete-image": {"image_id": IMAGE_ID},
        "export-image": {"image_id": IMAGE_ID, "bucket_url": "images:web-1.qcow2"},
        "prune-images": {"keep": 0, "max_age_days": None},
        "replicate-image": {"image_id": IMAGE_ID, "name": "web-1-copy", "cmk_id": None},
    }[flow_name]
    errors = validate({"params": params, "credentials_block": credentials_block}, schema)
    assert errors == [] or (credentials_block is None and _only_credentials(errors))


def _only_credentials(errors: list[Any]) -> bool:
    # null for credentials_block is refused by the schema (its default is ""); the flows never send it:
    # the parameter is "" however it was given (imsflow.validation.CredentialsBlock).
    return all(list(e.path) == ["credentials_block"] for e in errors)


def test_fleet_status_any_is_none_here_and_any_in_json() -> None:
    params = FleetParams(tags=["a=1"], status="any")
    assert params.status is None
    assert params.model_dump(mode="json")["status"] == "any"
    assert FleetParams.model_validate(params.model_dump(mode="json")).status is None
    assert FleetParams(tags=["a=1"], status="ACTIVE").model_dump(mode="json")["status"] == "ACTIVE"
    assert FleetParams(tags=["a=1"], name_contains="", chunk_deployment="").name_contains is None


def test_prune_keep_zero_is_no_count_rule() -> None:
    assert PruneParams(keep=0, max_age_days=30).keep is None
    assert PruneParams(keep=None, max_age_days=30).keep is None
    with pytest.raises(ValidationError, match="give a rule"):
        PruneParams(keep=0)


def test_credentials_block_given_as_none_or_empty_is_no_block() -> None:
    # Python callers may pass None as before; the flow gets "" (no block) either way.
    assert (
        create_image_from_ecs.validate_parameters(
            {"params": CreateImageParams(instance_id=WEB_1, name="web-1"), "credentials_block": None}
        )["credentials_block"]
        == ""
    )
    assert (
        create_images_for_fleet.validate_parameters({"params": FleetParams(tags=["a=1"])})[
            "credentials_block"
        ]
        == ""
    )


@pytest.mark.parametrize(
    ("params", "rule"),
    [
        ({"instance_id": "web-1", "name": "web-1"}, UUID_RULE),
        ({"instance_id": WEB_1, "name": " web-1"}, NAME_RULE),
        ({"instance_id": WEB_1, "name": "web-1", "tags": ["env.prod"]}, TAG_PARAM_RULE),
    ],
)
async def test_a_bad_value_through_the_api_states_the_rule(params: dict[str, Any], rule: str) -> None:
    # A run with a bad parameter ends before any call, with the rule in words, not the regex.
    with cloud_runtime(make_cloud()):
        state = await create_image_from_ecs(params, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert rule in message, message
    assert "pattern" not in message
    assert "^[" not in message
