"""The served deployments through the Prefect API: schedules, limits, schema enforcement, events."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.stack import DB_1, DEMO_PASSWORD, OPS_PASSWORD, OPS_USER, WEB_1, Stack

pytestmark = pytest.mark.slow


def _runs_of(stack: Stack, deployment_id: str) -> int:
    count: int = stack.post("/flow_runs/count", {"deployments": {"id": {"any_": [deployment_id]}}}).json()
    return count


def test_deployments_carry_schedules_limits_and_no_secret(stack: Stack) -> None:
    retention = stack.deployment("prune-images", "retention")
    assert [s["schedule"]["cron"] for s in retention["schedules"]] == ["0 4 * * *"]
    assert retention["parameters"] == {"params": {"keep": 7, "max_age_days": 30, "dry_run": False}}
    assert retention["enforce_parameter_schema"] is True
    assert retention["global_concurrency_limit"]["limit"] == 1
    assert retention["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"

    # Daily after the nightly fleet (02:00): fails when an ECS of the fleet has no image younger than 26 h.
    coverage = stack.deployment("image-coverage", "coverage")
    assert [s["schedule"]["cron"] for s in coverage["schedules"]] == ["0 7 * * *"]
    assert coverage["parameters"] == {"params": {"tags": ["backup=nightly"], "max_age": "26h"}}
    assert coverage["enforce_parameter_schema"] is True
    assert coverage["global_concurrency_limit"]["limit"] == 1
    fields = coverage["parameter_openapi_schema"]["definitions"]["CoverageParams"]["properties"]
    assert fields["max_age"]["title"] == "Maximum age"

    create = stack.deployment("create-image-from-ecs", "create-image")
    assert create["schedules"] == []
    schema = create["parameter_openapi_schema"]
    assert "credentials_block" in schema["properties"]
    fields = schema["definitions"]["CreateImageParams"]["properties"]
    assert fields["instance_id"]["description"].startswith("ID (UUID) of the ECS")
    assert fields["timeout_minutes"]["default"] == 30
    for name in ("create-image", "export-image", "delete-image", "replicate-image"):
        flow = {"create-image": "create-image-from-ecs"}.get(name, name)
        deployment = stack.deployment(flow, name)
        assert DEMO_PASSWORD not in str(deployment)
        assert deployment["enforce_parameter_schema"] is True
        # Exclusive per ECS (runtime/exclusive.py), not per deployment: create-image has no limit.
        limit = deployment["global_concurrency_limit"]
        assert (limit is None) if name == "create-image" else (limit["limit"] == 1)


def test_bad_image_name_is_refused_before_a_run_exists(stack: Stack) -> None:
    deployment = stack.deployment("create-image-from-ecs", "create-image")
    before = _runs_of(stack, deployment["id"])
    response = stack.post(
        f"/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"params": {"instance_id": WEB_1, "name": " starts with a space<>"}}},
    )
    assert response.status_code in (409, 422), response.text
    assert "params.name" in response.text
    assert _runs_of(stack, deployment["id"]) == before


def test_overlapping_retention_runs_cancel_the_newer(stack: Stack) -> None:
    deployment = stack.deployment("prune-images", "retention")
    dry = {"params": {"keep": 7, "max_age_days": 30, "dry_run": True}}
    responses = [
        stack.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": dry}) for _ in range(2)
    ]
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    runs = [r.json() for r in responses]
    finals = sorted(stack.wait_for_run(run["id"], timeout=90)["state_type"] for run in runs)
    assert finals == ["CANCELLED", "COMPLETED"]


def test_create_image_runs_for_two_ecss_at_once_both_complete(stack: Stack) -> None:
    deployment = stack.deployment("create-image-from-ecs", "create-image")
    stamp = int(time.time())
    wanted = [
        {"instance_id": WEB_1, "name": f"web-1-both-{stamp}"},
        {"instance_id": DB_1, "name": f"db-1-both-{stamp}", "stop_if_running": True},
    ]
    responses = [
        stack.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"params": params}})
        for params in wanted
    ]
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    # With the deployment-level limit the second was cancelled ("Deployment concurrency limit reached").
    finals = [stack.wait_for_run(r.json()["id"], timeout=120) for r in responses]
    messages = [f["state"]["message"] for f in finals]
    assert [f["state_type"] for f in finals] == ["COMPLETED", "COMPLETED"], messages


def _events(stack: Stack, name: str, resource: str) -> list[dict[str, Any]]:
    body = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource]}}, "limit": 10}
    events: list[dict[str, Any]] = stack.post("/events/filter", body).json()["events"]
    return events


def test_a_deployment_run_makes_an_image_and_emits_the_created_event(stack: Stack) -> None:
    deployment = stack.deployment("create-image-from-ecs", "create-image")
    name = f"web-1-api-{int(time.time())}"
    run = stack.post(
        f"/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"params": {"instance_id": WEB_1, "name": name}}},
    ).json()
    final = stack.wait_for_run(run["id"], timeout=90)
    assert final["state_type"] == "COMPLETED", final["state"]["message"]

    deadline = time.monotonic() + 20
    events: list[dict[str, Any]] = []
    while not events and time.monotonic() < deadline:
        events = [
            e
            for e in _events(stack, "imsflow.image.created", f"imsflow.ecs.{WEB_1}")
            if e["payload"]["image_name"] == name
        ]
        time.sleep(0.5)
    assert events, "imsflow.image.created was not recorded"
    event = events[0]
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in event["related"]}
    assert roles["image"] == f"imsflow.image.{event['payload']['image_id']}"
    assert roles["flow-run"] == f"prefect.flow-run.{run['id']}"


def test_a_run_uses_the_credentials_block_it_names(stack: Stack) -> None:
    registered = stack.run_cli("blocks", "register")
    assert registered.returncode == 0, registered.stderr
    assert stack.get("/block_types/slug/imsflow-credentials")["name"] == "imsflow Credentials"
    stack.save_credentials_block("ops-account", OPS_USER, OPS_PASSWORD)

    deployment = stack.deployment("create-image-from-ecs", "create-image")
    run = stack.post(
        f"/deployments/{deployment['id']}/create_flow_run",
        {
            "parameters": {
                "params": {"instance_id": WEB_1, "name": f"web-1-ops-{int(time.time())}"},
                "credentials_block": "ops-account",
            }
        },
    ).json()
    final = stack.wait_for_run(run["id"], timeout=90)
    assert final["state_type"] == "COMPLETED", final["state"]["message"]
    task_runs = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}}).json()
    assert f"get-token[{OPS_USER}@demo/eu-de]" in {t["name"] for t in task_runs}
    assert OPS_PASSWORD not in str(final["parameters"])
    block = stack.get("/block_types/slug/imsflow-credentials/block_documents/name/ops-account")
    assert block["data"]["username"] == OPS_USER
    assert OPS_PASSWORD not in str(block), "the API shows a block's secrets masked"

    # The CLI commands take the block by name too.
    pruned = stack.run_cli("prune", "--keep", "5", "--dry-run", "--credentials-block", "ops-account")
    assert pruned.returncode == 0, pruned.stderr
    assert "(dry run)" in pruned.stdout


def test_the_nightly_fleet_deployment_images_the_tagged_ecs(stack: Stack) -> None:
    fleet = stack.deployment("create-images-for-fleet", "nightly-fleet")
    assert [s["schedule"]["cron"] for s in fleet["schedules"]] == ["0 2 * * *"]
    # What the 02:00 schedule starts: the deployment's own parameters (ECSs tagged backup=nightly).
    run = stack.post(f"/deployments/{fleet['id']}/create_flow_run", {}).json()
    final = stack.wait_for_run(run["id"], timeout=120)
    assert final["state_type"] == "COMPLETED", final["state"]["message"]
    assert final["state"]["message"] == "1 images active"  # web-1 is the only ECS with that tag
