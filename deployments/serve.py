"""Serve imsflow's deployments from this process: ``imsflow serve`` or ``python deployments/serve.py``.

The deployments are read from ``prefect.yaml`` beside this file, so ``prefect deploy --all`` (work pool and
worker) and ``serve`` (one long-running process, a subprocess per flow run) register the same deployments
with the same schedules, parameters and concurrency limits.

Serving needs a Prefect server that outlives this process (``prefect server start``, then
``PREFECT_API_URL=http://127.0.0.1:4200/api``): with the temporary server the schedules would die with it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

PREFECT_YAML = Path(__file__).with_name("prefect.yaml")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

logger = logging.getLogger("imsflow.serve")


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


def load_spec(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments:`` entries of prefect.yaml (YAML anchors resolved)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    deployments: list[dict[str, Any]] = data.get("deployments") or []
    return deployments


def _module_path(entrypoint: str) -> tuple[str, str]:
    """``flows/lifecycle.py:prune_images`` → (``flows.lifecycle``, ``prune_images``)."""
    file, _, attribute = entrypoint.partition(":")
    return file.removesuffix(".py").replace("/", "."), attribute


def _schedules(entries: list[dict[str, Any]]) -> list[Any]:
    from prefect.schedules import Cron, Interval, RRule

    schedules: list[Any] = []
    for entry in entries:
        common = {
            "timezone": entry.get("timezone"),
            "active": entry.get("active", True),
            "parameters": entry.get("parameters"),
            "slug": entry.get("slug"),
        }
        if "cron" in entry:
            schedules.append(Cron(entry["cron"], day_or=entry.get("day_or", True), **common))
        elif "interval" in entry:
            schedules.append(Interval(entry["interval"], **common))
        elif "rrule" in entry:
            schedules.append(RRule(entry["rrule"], **common))
        else:
            raise ValueError(f"schedule {entry!r} has no cron, interval or rrule")
    return schedules


def build_deployments(
    spec: list[dict[str, Any]] | None = None, *, only: set[str] | None = None
) -> tuple[list[RunnerDeployment], list[Skipped]]:
    """A ``RunnerDeployment`` per prefect.yaml entry whose flow can be imported; the others are skipped."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.flows import Flow
    from prefect.types.entrypoint import EntrypointType

    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    built: list[RunnerDeployment] = []
    skipped: list[Skipped] = []
    for entry in spec if spec is not None else load_spec():
        name = entry["name"]
        if only is not None and name not in only:
            continue
        module_name, attribute = _module_path(entry["entrypoint"])
        try:
            flow = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            skipped.append(Skipped(name, f"{entry['entrypoint']} cannot be loaded ({exc})"))
            continue
        if not isinstance(flow, Flow):
            skipped.append(Skipped(name, f"{entry['entrypoint']} is not a flow"))
            continue
        limit = entry.get("concurrency_limit")
        deployment = cast(
            "RunnerDeployment",
            flow.to_deployment(
                name=name,
                description=entry.get("description"),
                tags=entry.get("tags"),
                parameters=entry.get("parameters"),
                schedules=_schedules(entry.get("schedules") or []),
                concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
                enforce_parameter_schema=entry.get("enforce_parameter_schema", True),
                # Module paths keep working whatever directory the runner was started from.
                entrypoint_type=EntrypointType.MODULE_PATH,
            ),
        )
        built.append(deployment)
    return built, skipped


def serve(*, limit: int | None = None, only: set[str] | None = None) -> None:
    """Register the deployments and run their flow runs until interrupted."""
    from prefect import serve as prefect_serve

    deployments, skipped = build_deployments(only=only)
    for skip in skipped:
        logger.warning("not serving %s: %s", skip.name, skip.reason)
    if not deployments:
        raise SystemExit("no deployment to serve")
    prefect_serve(*deployments, limit=limit)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve()
