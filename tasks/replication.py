"""Steps of in-region replication: check the source, submit the copy exactly once, tag the copy.

``POST /v1/cloudimages/{image_id}/copy`` (replicating_an_image_within_a_region.rst) answers a job, and the
copy it makes is followed as any image job (``tasks.image.poll_job``: the job's ``entities.image_id``).

Exactly once. The create call takes tags, so an image made by ``tasks.image`` carries its request key from
birth and is found again by it. The copy call takes none: only ``name``, ``description``, ``cmk_id`` and
``enterprise_project_id``. So the key travels in the one free-text field the copy keeps, the description,
as a marker (``[imsflow-request=<key>]``, :func:`marked_description`), and is written as a proper tag once
the copy exists (:func:`tag_copy`). A re-run (a task retry, a flow retry, a new run after a crash) looks,
before it posts, in this order (:func:`find_copy`):

1. the job recorded for the key (``runtime.records.SUBMISSIONS``, written the moment the cloud answers):
   the POST's answer arrived, the job is followed (still running, or done);
2. an image tagged ``imsflow-request=<key>``: a previous run got as far as tagging;
3. an image of the request's name, in the request's enterprise project, whose description holds the
   marker: the POST was applied but its answer was lost (or the run died before recording it). The copy is
   listed from the moment the job is accepted (queued, then saving, then active), so this finds it whether
   its job still runs or has ended. The query is exact (``name`` filter) and the marker deterministic (the
   key is a hash of the source, name, key and enterprise project), so an unrelated image of the same name is
   never taken for ours;

and posts only when none of them finds the copy. A copy whose job failed (``killed``) is not adopted: a new
run makes a new attempt, as for any image job. The marker stays in the description: it is what a later
re-run (whose record may be gone) finds the copy by; the tag then lets retention, coverage and prune see the
copy as they see every image imsflow made (``imsflow-request``, and ``imsflow-instance`` when the source
was made from an ECS by imsflow).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from prefect import task
from pydantic import BaseModel

import runtime
from imsflow.client import CloudClient
from imsflow.errors import InvalidRequestError
from imsflow.models import CopyImageRequest, IamToken, Image, ImageListQuery, ImageTag, ImageTagsRequest
from runtime.auth import client_for
from runtime.records import SUBMISSIONS, Submission
from runtime.retry import transient_retries

# The submission record and its resume rules are tasks.image's (one story for every request key); so is the
# flow run that submitted (a retry of that run must not post again after a FAIL).
from tasks.image import ALIVE, INSTANCE_TAG, REQUEST_TAG, current_flow_run_id, resume_recorded

#: On a copy: the image it was copied from.
SOURCE_TAG = "imsflow-source"
#: The longest description IMS takes (replicating_an_image_within_a_region.rst: "a maximum of 1,024").
DESCRIPTION_MAX = 1024
#: ``[imsflow-request=<32 hex>]``: what a copy's description carries for its request.
MARKER_LEN = len("[imsflow-request=]") + 32
#: The longest description a user may give a copy: the marker and a space take the rest.
USER_DESCRIPTION_MAX = DESCRIPTION_MAX - MARKER_LEN - 1


def copy_request_key(
    image_id: str,
    name: str,
    cmk_id: str | None = None,
    enterprise_project_id: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """32 hex characters (an IMS tag value) naming one replication: the source, the copy's name, its key
    and enterprise project (blank and ``"0"`` are the same default project), or an explicit idempotency key.
    The description is not part of it: changing the words does not ask for a second copy."""
    material = idempotency_key or f"copy\n{image_id}\n{name}\n{cmk_id or ''}\n{enterprise_project_id or '0'}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def marker(key: str) -> str:
    return f"[{REQUEST_TAG}={key}]"


def marked_description(description: str | None, key: str) -> str:
    """The user's description with the request's marker after it (the marker alone without one)."""
    text = (description or "").strip()
    if len(text) > USER_DESCRIPTION_MAX:
        raise InvalidRequestError(
            "description",
            text,
            f"at most {USER_DESCRIPTION_MAX} characters for a copy: imsflow adds its marker "
            f"({MARKER_LEN} characters) to find the copy again after a crash",
        )
    return f"{text} {marker(key)}" if text else marker(key)


class CopyRequest(BaseModel):
    """One replication as the steps pass it on: the source, the copy's request (as the user gave it; the
    marker is added at submission) and its key."""

    image_id: str
    request: CopyImageRequest
    key: str


def replicable_or_why(image: Image) -> str | None:
    """Why ``image`` cannot be replicated (the page's Constraints), or None."""
    if image.is_whole_image:
        return "it is a full-ECS image (__whole_image true): full-ECS images cannot be replicated"
    if image.virtual_env_type == "IsoImage":
        return "it was made from an ISO file: such images do not support in-region replication"
    if image.status != "active":
        return f"it is {image.status or 'not active'}, not active"
    return None


def not_replicable(image: Image) -> InvalidRequestError | None:
    """The error that refuses ``image`` before any copy call (saying why), or None when it may be copied."""
    why = replicable_or_why(image)
    if why is None:
        return None
    return InvalidRequestError(
        "image_id",
        image.id,
        f"image {image.name or image.id} cannot be replicated: {why}",
        hint="Replicate a system-disk or data-disk image: the page rules out full-ECS images and images "
        "made from ISO files.",
    )


@task(name="check-replicable", task_run_name="check-replicable[{image_id}]", **transient_retries())
async def check_replicable(image_id: str, token: IamToken | None) -> Image:
    """The source image, if the page's constraints allow its replication; else ``InvalidRequestError``
    saying why, before any copy call."""
    async with client_for(token) as client:
        image = await client.ims.get_image(image_id)
    refusal = not_replicable(image)
    if refusal is not None:
        raise refusal
    runtime.report("check-replicable", f"{image.name} ({image_id}) is {image.status}")
    return image


async def find_copy(client: CloudClient, copy: CopyRequest) -> Submission | None:
    """A copy an earlier attempt of ``copy`` made (its job recorded, or the copy tagged or marked): the
    order and the reasons are in this module's docstring. None: there is none, post."""
    recorded = await resume_recorded(client, copy.key)
    if recorded is not None:
        return recorded
    tagged = await client.ims.list_images(ImageListQuery.tagged(REQUEST_TAG, copy.key))
    found = [i for i in tagged if i.status in ALIVE]
    if not found:
        query = ImageListQuery(
            name=copy.request.name,
            imagetype="private",
            enterprise_project_id=copy.request.enterprise_project_id or "0",
        )
        named = await client.ims.list_images(query)
        found = [i for i in named if i.status in ALIVE and marker(copy.key) in (i.description or "")]
    if not found:
        return None
    image = sorted(found, key=lambda i: (i.created_at or datetime.min.replace(tzinfo=UTC), i.id))[0]
    return Submission(
        request_key=copy.key,
        image_id=image.id,
        how="adopted",
        submitted_at=image.created_at or datetime.now(UTC),
    )


@task(
    name="submit-copy",
    task_run_name="submit-copy[{copy.image_id}/{copy.request.name}]",
    **transient_retries(),
)
async def submit_copy(copy: CopyRequest, token: IamToken | None) -> Submission:
    """``POST /v1/cloudimages/{image_id}/copy`` unless an earlier attempt made the copy already
    (:func:`find_copy`); the job ID is recorded the moment it arrives. Every attempt looks first, which is
    what makes retrying a POST whose answer was lost safe."""
    async with client_for(token) as client:
        found = await find_copy(client, copy)
        if found is not None:
            runtime.report(
                "submit-copy",
                f"{found.how} job {found.job_id or '-'} (image {found.image_id or 'of the job'})",
            )
            return found
        body = copy.request.model_copy(
            update={"description": marked_description(copy.request.description, copy.key)}
        )
        job_id = await client.ims.copy_image(copy.image_id, body)
    submission = Submission(
        request_key=copy.key, job_id=job_id, submitted_at=datetime.now(UTC), flow_run_id=current_flow_run_id()
    )
    await SUBMISSIONS.put(copy.key, submission)
    runtime.report("submit-copy", f"submitted job {job_id}")
    return submission


def copy_tags(key: str, source: Image) -> list[ImageTag]:
    """What the copy is tagged with: its request, its source, and the source's ECS when imsflow made the
    source from one (so retention and coverage count the copy with that ECS's images)."""
    tags = [ImageTag(key=REQUEST_TAG, value=key), ImageTag(key=SOURCE_TAG, value=source.id)]
    instance = source.tag_map.get(INSTANCE_TAG)
    if instance:
        tags.append(ImageTag(key=INSTANCE_TAG, value=instance))
    return tags


@task(name="tag-copy", task_run_name="tag-copy[{image_id}]", **transient_retries())
async def tag_copy(image_id: str, key: str, source: Image, token: IamToken | None) -> list[str]:
    """Tag the copy (``POST /v2/{project_id}/images/{image_id}/tags/action``, ``create``: idempotent, so a
    retry or a re-run writes the same tags again); the tags as ``key=value``."""
    tags = copy_tags(key, source)
    async with client_for(token) as client:
        await client.ims.update_image_tags(image_id, ImageTagsRequest(tags=tags, action="create"))
    written = [f"{t.key}={t.value}" for t in tags]
    runtime.report("tag-copy", f"{image_id}: {', '.join(written)}")
    return written


__all__ = [
    "SOURCE_TAG",
    "USER_DESCRIPTION_MAX",
    "CopyRequest",
    "check_replicable",
    "copy_request_key",
    "copy_tags",
    "find_copy",
    "marked_description",
    "marker",
    "not_replicable",
    "replicable_or_why",
    "submit_copy",
    "tag_copy",
]
