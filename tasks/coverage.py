"""Steps of the coverage check: does every selected ECS have an active image younger than the maximum age?

Only the images imsflow made count (both of its tags, ``imsflow-request`` and ``imsflow-instance``: see
``tasks.lifecycle.made_by_imsflow``), and only system-disk images (a data-disk image of a set does not cover
its ECS on its own). Which ECSs are covered is decided by :func:`plan_coverage`, a pure function, so the rule
is tested without a cloud; the selection of the ECSs is the fleet's (``flows.fleet.select_servers``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

import runtime
from imsflow.models import Image
from tasks.image import VOLUME_TAG
from tasks.lifecycle import made_by_imsflow, now_utc  # patched here by tests on virtual time


class SelectedEcs(BaseModel):
    """An ECS the check covers: its ID and name, or ``found=False`` for an ID the project does not have."""

    instance_id: str
    name: str
    found: bool = True
    #: Why it could not be looked up (an ID that is not in the project).
    error: str | None = None


class CoverageRow(BaseModel):
    """One ECS's verdict: a row of the run's table artifact and of ``imsflow coverage``."""

    verdict: Literal["covered", "gap"]
    reason: str
    server_name: str
    instance_id: str
    #: The newest active image imsflow made of the ECS (else its newest image of any status), if any.
    image_name: str | None = None
    image_id: str | None = None
    image_status: str | None = None
    image_created_at: datetime | None = None
    #: The image's age at the check, in seconds (None: no image, or no creation time).
    age_seconds: float | None = None

    @property
    def age(self) -> str:
        return age_text(timedelta(seconds=self.age_seconds)) if self.age_seconds is not None else "-"


def age_text(delta: timedelta) -> str:
    """``45 min``, ``25.5 h``, ``3.2 d``: an age for a person, rounded down (an image shown as 26 h old is at
    least 26 h old, and one younger than 26 h never shows as 26 h)."""
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 3600:
        return f"{math.floor(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{_tenths(seconds / 3600)} h"
    return f"{_tenths(seconds / 86400)} d"


def _tenths(value: float) -> str:
    return f"{math.floor(value * 10 + 1e-9) / 10:.1f}".removesuffix(".0")


def _system_image(image: Image) -> bool:
    return VOLUME_TAG not in image.tag_map and not image.is_data_image


def plan_coverage(
    servers: Iterable[SelectedEcs], images: Iterable[Image], *, now: datetime, max_age: timedelta
) -> list[CoverageRow]:
    """One row per ECS, in the order given: ``covered`` when imsflow made an *active* system-disk image of it
    that is younger than ``max_age`` (an image exactly ``max_age`` old is too old), else ``gap`` and why.

    Images imsflow did not make, data-disk images and images of other ECSs are not looked at; an image being
    made (``queued``, ``saving``) or failed (``killed``) covers nothing, nor does one without a creation time.
    """
    if max_age <= timedelta(0):
        raise ValueError("max_age must be more than zero")
    per_ecs: dict[str, list[Image]] = {}
    for image in images:
        instance = made_by_imsflow(image)
        if instance is not None and _system_image(image):
            per_ecs.setdefault(instance, []).append(image)
    oldest = datetime.min.replace(tzinfo=UTC)
    limit = age_text(max_age)
    rows: list[CoverageRow] = []
    for server in servers:
        row = CoverageRow(verdict="gap", reason="", server_name=server.name, instance_id=server.instance_id)
        rows.append(row)
        if not server.found:
            row.reason = f"no such ECS in the project ({server.error})" if server.error else "no such ECS"
            continue
        made = sorted(
            per_ecs.get(server.instance_id, []), key=lambda i: (i.created_at or oldest, i.id), reverse=True
        )
        active = [i for i in made if i.status == "active"]
        shown = active[0] if active else made[0] if made else None
        if shown is not None:
            row.image_name, row.image_id = shown.name or shown.id, shown.id
            row.image_status, row.image_created_at = shown.status or "unknown", shown.created_at
            if shown.created_at is not None:
                row.age_seconds = (now - shown.created_at).total_seconds()
        if not made:
            row.reason = "no image made by imsflow"
        elif not active:
            row.reason = f"no active image (the newest is {row.image_status})"
        elif row.age_seconds is None:
            row.reason = "the newest active image has no creation time"
        elif row.age_seconds < max_age.total_seconds():
            row.verdict, row.reason = "covered", f"active image younger than {limit}"
        else:
            row.reason = f"newest active image not younger than {limit}"
    return rows


@task(
    name="check-coverage",
    cache_policy=NO_CACHE,
)
async def check_coverage(
    servers: list[SelectedEcs], images: list[Image], max_age: timedelta
) -> list[CoverageRow]:
    """:func:`plan_coverage` at this moment (wall clock), reported as a step: how many ECSs are covered."""
    rows = plan_coverage(servers, images, now=now_utc(), max_age=max_age)
    covered = sum(1 for r in rows if r.verdict == "covered")
    runtime.report(
        "check-coverage", f"{covered} of {len(rows)} ECSs covered (younger than {age_text(max_age)})"
    )
    return rows


__all__ = ["CoverageRow", "SelectedEcs", "age_text", "check_coverage", "now_utc", "plan_coverage"]
