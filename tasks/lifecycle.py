"""Steps for what happens to an image after it exists: delete it, export it to OBS, prune old ones.

Retention only ever looks at images imsflow made: those carrying both of its tags (``imsflow-request`` and
``imsflow-instance``, written by ``tasks.image``). Which of those go is decided by :func:`plan_retention`, a
pure function, so the rules are tested without a cloud.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from prefect import task
from pydantic import BaseModel

import runtime
from imsflow.errors import ImageBeingCreatedError, ImageNotFoundError, ImsflowError, InvalidRequestError
from imsflow.models import ExportImageRequest, IamToken, Image, ImageListQuery, ImsJob
from imsflow.polling import PollPolicy
from runtime.auth import client_for
from runtime.retry import transient_retries
from tasks.image import INSTANCE_TAG, REQUEST_TAG, VOLUME_TAG, data_request_key

#: Image states in which IMS is still writing the image: deleting it is refused (IMG.0090).
BEING_CREATED = frozenset({"queued", "saving"})
#: Glance reports a deleted image as 404 or, for a while, with this status.
GONE = frozenset({"deleted"})
#: Why the newest active image of an ECS that no longer exists stays (unless ``prune_gone_servers``).
GONE_SERVER_REASON = "last image of a server that no longer exists"


def image_tags(image: Image) -> dict[str, str]:
    """The image's tags as a mapping (``key.value`` or ``key=value`` as IMS lists them)."""
    return image.tag_map


def made_by_imsflow(image: Image) -> str | None:
    """The ECS the image was made from, when imsflow made it (both of its tags present), else None."""
    tags = image_tags(image)
    if not tags.get(REQUEST_TAG) or not tags.get(INSTANCE_TAG):
        return None
    return tags[INSTANCE_TAG]


# ------------------------------------------------------------------------------------------- retention


class RetentionRule(BaseModel):
    """Keep the ``keep`` newest images per ECS and every image younger than ``max_age``.

    An image goes only when *every* rule given lets it go: with both rules, the N newest stay however old
    they are, and young images stay however many there are.
    """

    keep: int | None = None
    max_age: timedelta | None = None

    def describe(self) -> str:
        parts = []
        if self.keep is not None:
            parts.append(f"the {self.keep} newest")
        if self.max_age is not None:
            parts.append(f"those younger than {_age(self.max_age)}")
        return "keep " + " and ".join(parts) + " per ECS"


class RetentionDecision(BaseModel):
    image_id: str
    name: str
    instance_id: str
    status: str
    created_at: datetime | None
    action: Literal["keep", "delete"]
    reason: str


def _age(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    if days >= 1:
        return f"{days:.0f} d" if days == int(days) else f"{days:.1f} d"
    return f"{delta.total_seconds() / 3600:.0f} h"


def image_sets(group: Iterable[Image]) -> list[list[Image]]:
    """One ECS's images as the units retention keeps or deletes whole: each image with the data-disk images of
    its set (``--kind system-and-data``: their request key is ``data_request_key`` of its own, and they carry
    ``imsflow-volume``), head first; data-disk images whose system image is gone form a unit of their own.
    Units newest first (by their head)."""
    oldest = datetime.min.replace(tzinfo=UTC)

    def newest_first(images: Iterable[Image]) -> list[Image]:
        return sorted(images, key=lambda i: (i.created_at or oldest, i.id), reverse=True)

    heads: list[Image] = []
    data: dict[str, list[Image]] = defaultdict(list)
    for image in group:
        tags = image_tags(image)
        if VOLUME_TAG in tags:
            data[tags.get(REQUEST_TAG, "")].append(image)
        else:
            heads.append(image)
    units = [[head, *data.pop(data_request_key(image_tags(head)[REQUEST_TAG]), [])] for head in heads]
    units += [newest_first(members) for members in data.values()]
    return sorted(units, key=lambda unit: (unit[0].created_at or oldest, unit[0].id), reverse=True)


def _held_back(unit: list[Image], in_use: frozenset[str]) -> str | None:
    """Why a unit cannot go, whatever the rules say (one member that cannot go holds back the whole set)."""
    for image in unit:
        status = image.status or "unknown"
        if status != "active":
            why = "still being created" if status in BEING_CREATED else f"not active ({status})"
            return why if image is unit[0] else f"{why}: data-disk image {image.name or image.id}"
    for image in unit:
        if image.id in in_use:
            return "in use by an ECS"
        if image.protected:
            return "protected" if image is unit[0] else f"protected: data-disk image {image.name or image.id}"
    return None


def plan_retention(
    images: Iterable[Image],
    rule: RetentionRule,
    *,
    now: datetime,
    in_use: frozenset[str] = frozenset(),
    existing: frozenset[str] | None = None,
    prune_gone_servers: bool = False,
) -> list[RetentionDecision]:
    """Decide, per ECS, which of imsflow's images to keep and which to delete.

    Images imsflow did not make are not in the result at all. Of imsflow's, only an ``active`` image that is
    neither protected nor used by an ECS can be deleted; the others are kept with the reason. The ``keep``
    newest are counted among the active images, so a half-made image never pushes a good one out.

    A system image and the data-disk images of its set (:func:`image_sets`) are one unit: ranked by the
    system image, kept or deleted together (a member that cannot go keeps the whole set), so a system image is
    never pruned without its data-disk images, nor they without it.

    ``existing`` are the IDs of the project's ECSs (``None``: not known, every ECS counts as existing). The
    newest active image of an ECS that no longer exists is its last copy: it is kept
    (:data:`GONE_SERVER_REASON`) whatever the rules say, unless ``prune_gone_servers``.
    """
    if rule.keep is None and rule.max_age is None:
        raise ValueError("a retention rule needs keep, max_age or both")
    per_ecs: dict[str, list[Image]] = defaultdict(list)
    for image in images:
        instance = made_by_imsflow(image)
        if instance is not None:
            per_ecs[instance].append(image)

    decisions: list[RetentionDecision] = []
    for instance, group in sorted(per_ecs.items()):
        server_gone = existing is not None and instance not in existing
        rank = 0
        for unit in image_sets(group):
            head = unit[0]

            def decide(
                action: Literal["keep", "delete"],
                reason: str,
                unit: list[Image] = unit,
                instance: str = instance,
            ) -> None:
                for image in unit:
                    of = "" if image is unit[0] else f" (data-disk image of {unit[0].name or unit[0].id})"
                    decisions.append(
                        RetentionDecision(
                            image_id=image.id,
                            name=image.name or "",
                            instance_id=instance,
                            status=image.status or "unknown",
                            created_at=image.created_at,
                            action=action,
                            reason=reason + of,
                        )
                    )

            if (head.status or "unknown") == "active":
                rank += 1  # a half-made set never pushes a good one out; a held-back active one does count
            held = _held_back(unit, in_use)
            if held is not None:
                decide("keep", held)
                continue
            if rank == 1 and server_gone and not prune_gone_servers:
                decide("keep", GONE_SERVER_REASON)
                continue
            if rule.keep is not None and rank <= rule.keep:
                decide("keep", f"newest #{rank}")
                continue
            age = now - head.created_at if head.created_at is not None else None
            if rule.max_age is not None and (age is None or age < rule.max_age):
                decide("keep", f"younger than {_age(rule.max_age)}" if age is not None else "age unknown")
                continue
            reason = f"older than {_age(rule.max_age)}" if rule.max_age is not None else ""
            if rule.keep is not None:
                reason = f"beyond the {rule.keep} newest" + (f", {reason}" if reason else "")
            decide("delete", reason)
    return decisions


# ---------------------------------------------------------------------------------------------- listing


@task(
    name="list-imsflow-images",
    **transient_retries(),
)
async def list_imsflow_images(instance_ids: list[str], token: IamToken | None) -> list[Image]:
    """The images imsflow made in this project, of the given ECSs (of every ECS when the list is empty).

    This project's own images are ``__imagetype`` private, or shared while they have sharing members (the
    query page: "images you share with other tenants ... is shared"; ``owner`` tells ours from those shared
    with us), so both are listed: a shared golden image is still kept, pruned and counted as coverage.
    """
    async with client_for(token) as client:
        owner = await client.resolve_project_id()
        kinds: list[dict[str, str]] = [{"imagetype": "private"}, {"imagetype": "shared", "owner": owner}]
        images: list[Image] = []
        for kind in kinds:
            if instance_ids:
                for instance_id in instance_ids:
                    query = ImageListQuery.tagged(INSTANCE_TAG, instance_id, **kind)
                    images += [i async for i in client.ims.iter_images(query)]
            else:
                images += [i async for i in client.ims.iter_images(ImageListQuery(**kind))]
    ours = [i for i in images if made_by_imsflow(i) is not None]
    # Filter again on our side: the tag query is a convenience, the tags are the rule.
    if instance_ids:
        ours = [i for i in ours if made_by_imsflow(i) in instance_ids]
    runtime.report("list-imsflow-images", f"{len(ours)} images made by imsflow")
    return list({i.id: i for i in ours}.values())


class EcsCensus(BaseModel):
    """What retention needs to know of the project's ECSs: which exist, and which images they run from."""

    server_ids: frozenset[str]
    images_in_use: frozenset[str]


@task(
    name="ecs-census",
    **transient_retries(),
)
async def ecs_census(token: IamToken | None) -> EcsCensus:
    """Every ECS of the project (one paged listing): their IDs, and the images their system disks are from."""
    async with client_for(token) as client:
        servers = [s async for s in client.ecs.iter_servers()]
    used = frozenset(s.image.id for s in servers if s.image is not None and s.image.id)
    runtime.report("ecs-census", f"{len(servers)} ECSs, {len(used)} images in use")
    return EcsCensus(server_ids=frozenset(s.id for s in servers), images_in_use=used)


# ---------------------------------------------------------------------------------------------- delete


class DeleteResult(BaseModel):
    image_id: str
    name: str | None
    outcome: Literal["deleted", "already-gone"]


def _being_created(image: Image) -> ImageBeingCreatedError:
    # Refuse before asking, with the cloud's own code, so the message is the same either way.
    return ImageBeingCreatedError(
        status=400,
        code="IMG.0090",
        message=f"image {image.id} ({image.name}) is still being created ({image.status}); "
        "an image being created cannot be deleted",
        url=f"/v2/images/{image.id}",
    )


@task(
    name="delete-image",
    task_run_name="delete-image[{image_id}]",
    **transient_retries(),
)
async def remove_image(image_id: str, token: IamToken | None, timeout_seconds: float = 600) -> DeleteResult:
    """Delete the image and wait until it is gone. Safe to retry: an image already gone is the goal."""
    async with client_for(token) as client:
        try:
            image = await client.ims.get_image(image_id)
        except ImageNotFoundError:
            runtime.report("delete-image", f"{image_id} is already gone")
            return DeleteResult(image_id=image_id, name=None, outcome="already-gone")
        if image.status in GONE:
            return DeleteResult(image_id=image_id, name=image.name, outcome="already-gone")
        if image.status in BEING_CREATED:
            raise _being_created(image)
        try:
            await client.ims.delete_image(image_id)
        except ImageNotFoundError:
            return DeleteResult(image_id=image_id, name=image.name, outcome="already-gone")

        async def gone() -> bool:
            try:
                current = await client.ims.get_image(image_id)
            except ImageNotFoundError:
                return True
            return current.status in GONE

        try:
            await runtime.wait_until(gone, timeout=timeout_seconds, what=f"image {image_id} to go away")
        except TimeoutError:
            raise ImsflowError(
                f"image {image_id} still exists {timeout_seconds:.0f} s after it was deleted",
                hint="check the image in the console; the deletion may still finish",
            ) from None
    runtime.report("delete-image", f"deleted {image.name} ({image_id})")
    return DeleteResult(image_id=image_id, name=image.name, outcome="deleted")


# ---------------------------------------------------------------------------------------------- export


#: What to do instead of exporting a full-ECS image.
WHOLE_IMAGE_EXPORT_HINT = (
    "Export a system-disk image of the ECS instead: make one with `imsflow create --kind system` (or "
    "system-and-data, whose data-disk images can be exported too), then export that."
)


class ExportResult(BaseModel):
    image_id: str
    job_id: str
    bucket_url: str
    file_format: str


@task(
    name="submit-export",
    task_run_name="submit-export[{image_id}]",
    **transient_retries(),
)
async def submit_export(image_id: str, request: ExportImageRequest, token: IamToken | None) -> str:
    """``POST /v1/cloudimages/{image_id}/file``; returns the export job ID.

    Retried only on throttling, 5xx and transport errors. A retried POST that the cloud had already applied
    meets IMG.0148 (image being exported), which is not retried: the first export carries on.

    A full-ECS image (``__whole_image``) is refused before the POST: exporting_an_image.rst, "The following
    private images cannot be exported: Full-ECS images" (IMS would answer IMG.0128).
    """
    async with client_for(token) as client:
        image = await client.ims.get_image(image_id)
        if image.is_whole_image:
            raise InvalidRequestError(
                "image_id",
                image_id,
                f"image {image.name or image_id} is a full-ECS image, and IMS cannot export full-ECS images",
                hint=WHOLE_IMAGE_EXPORT_HINT,
            )
        job_id = await client.ims.export_image(image_id, request)
    runtime.report("submit-export", f"export job {job_id} to {request.bucket_url}")
    return job_id


@task(
    name="poll-export",
    task_run_name="poll-export[{job_id}]",
    **transient_retries(),
)
async def poll_export(job_id: str, token: IamToken | None, timeout_seconds: float) -> ImsJob:
    """Wait for the export job to end; a FAIL is a ``JobFailedError`` with the cloud's reason."""
    return await follow_ims_job("poll-export", job_id, token, timeout_seconds)


async def follow_ims_job(step: str, job_id: str, token: IamToken | None, timeout_seconds: float) -> ImsJob:
    """Wait for an IMS job that makes no image (export, sharing) to end, reporting its status as ``step``;
    a FAIL is a ``JobFailedError`` with the cloud's reason (``runtime.wait_for_job``)."""
    settings = runtime.settings()
    policy = PollPolicy(initial_delay=settings.poll_initial_delay, max_interval=settings.poll_max_interval)
    async with client_for(token) as client:

        async def fetch() -> ImsJob:
            return await client.ims.get_job(job_id)

        async def show(job: ImsJob, elapsed: float) -> None:
            runtime.report(step, f"{job.status} after {elapsed:.0f} s")

        return await runtime.wait_for_job(
            fetch, job_id=job_id, timeout=timeout_seconds, policy=policy, on_update=show
        )


def now_utc() -> datetime:
    """Wall-clock now for age rules; tests on virtual time pass ``now`` explicitly instead."""
    return datetime.now(UTC)


__all__ = [
    "BEING_CREATED",
    "GONE_SERVER_REASON",
    "DeleteResult",
    "EcsCensus",
    "ExportResult",
    "RetentionDecision",
    "RetentionRule",
    "ecs_census",
    "follow_ims_job",
    "image_tags",
    "list_imsflow_images",
    "made_by_imsflow",
    "plan_retention",
    "poll_export",
    "remove_image",
    "submit_export",
]
