"""Prefect events for what imsflow did: ``imsflow.image.created``, ``imsflow.image.failed`` and
``imsflow.coverage.gap``.

The image events are emitted by flow state hooks of the create-image flow, so they fire once per flow run
on its final state (a flow retry in between emits nothing). The coverage flow emits one gap event per ECS
that has no recent image. The ECS is the event's resource and the image a related resource, which is what
automations match on: ``imsflow notify`` sets up a webhook call on failures.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.client.schemas.objects import FlowRun, State
from prefect.events import emit_event
from prefect.flows import Flow

IMAGE_CREATED = "imsflow.image.created"
IMAGE_FAILED = "imsflow.image.failed"
COVERAGE_GAP = "imsflow.coverage.gap"

logger = logging.getLogger("imsflow.events")


def ecs_resource(instance_id: str) -> dict[str, str]:
    return {"prefect.resource.id": f"imsflow.ecs.{instance_id}", "prefect.resource.name": instance_id}


def image_resource(image_id: str, name: str | None) -> dict[str, str]:
    resource = {"prefect.resource.id": f"imsflow.image.{image_id}", "prefect.resource.role": "image"}
    if name:
        resource["prefect.resource.name"] = name
    return resource


def _flow_run_resource(flow_run: FlowRun) -> dict[str, str]:
    return {
        "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
        "prefect.resource.role": "flow-run",
        "prefect.resource.name": flow_run.name,
    }


def _requested(flow_run: FlowRun) -> dict[str, Any]:
    params = flow_run.parameters.get("params") or {}
    if hasattr(params, "model_dump"):
        params = params.model_dump()
    return params if isinstance(params, dict) else {}


async def emit_image_created(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """on_completion hook: the image exists (submitted now, resumed or adopted)."""
    result = await state.aresult(raise_on_failure=False)
    if getattr(result, "dry_run", False):
        return  # a dry run made no image: nothing to announce, and nothing wrong
    image_id = getattr(result, "image_id", None)
    if image_id is None:
        logger.warning("flow run %s completed without an image id; no event", flow_run.name)
        return
    instance_id = getattr(result, "instance_id", None) or _requested(flow_run).get("instance_id", "unknown")
    # A system + data-disk set: every data-disk image is a related resource too, and listed in the payload,
    # so an automation (or a copy job) on the event sees the whole set, not the system image alone.
    data_images = [(d.image_id, d.name) for d in getattr(result, "data_images", None) or []]
    emit_event(
        event=IMAGE_CREATED,
        resource=ecs_resource(instance_id),
        related=[
            image_resource(image_id, getattr(result, "name", None)),
            *(image_resource(data_id, data_name) for data_id, data_name in data_images),
            _flow_run_resource(flow_run),
        ],
        payload={
            "image_id": image_id,
            "image_name": getattr(result, "name", None),
            "job_id": getattr(result, "job_id", None),
            "how": getattr(result, "how", None),
            "kind": getattr(result, "kind", None),
            "data_image_ids": [data_id for data_id, _ in data_images],
        },
    )


def emit_image_failed(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """on_failure / on_crashed hook: the run ended without an image."""
    requested = _requested(flow_run)
    instance_id = str(requested.get("instance_id") or "unknown")
    related = [_flow_run_resource(flow_run)]
    emit_event(
        event=IMAGE_FAILED,
        resource=ecs_resource(instance_id),
        related=related,
        payload={
            "image_name": requested.get("name"),
            "state": state.name,
            # The state message is the exception's one line (the client redacts secrets from its errors).
            "reason": (state.message or "")[:1000],
        },
    )


def emit_coverage_gap(
    *,
    instance_id: str,
    server_name: str,
    reason: str,
    max_age: str,
    image_id: str | None = None,
    image_name: str | None = None,
    age_seconds: float | None = None,
) -> None:
    """One ECS without an active image younger than ``max_age`` (called inside the coverage flow's run)."""
    from prefect.runtime import flow_run

    resource = ecs_resource(instance_id)
    if server_name and server_name != "?":
        resource["prefect.resource.name"] = server_name
    related = [image_resource(image_id, image_name)] if image_id else []
    run_id = flow_run.get_id()
    if run_id is not None:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{run_id}",
                "prefect.resource.role": "flow-run",
                "prefect.resource.name": str(flow_run.get_name() or ""),
            }
        )
    emit_event(
        event=COVERAGE_GAP,
        resource=resource,
        related=related,
        payload={
            "instance_id": instance_id,
            "server_name": server_name,
            "reason": reason,
            "max_age": max_age,
            "image_id": image_id,
            "image_name": image_name,
            "age_hours": round(age_seconds / 3600, 2) if age_seconds is not None else None,
        },
    )


__all__ = [
    "COVERAGE_GAP",
    "IMAGE_CREATED",
    "IMAGE_FAILED",
    "ecs_resource",
    "emit_coverage_gap",
    "emit_image_created",
    "emit_image_failed",
]
