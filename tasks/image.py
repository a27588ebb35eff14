"""Steps 3 and 4: submit the image job exactly once, then follow it to an active image (or image set).

Exactly once: every request has a key (from instance ID + image name, or an explicit idempotency key; plus the
image kind when it is not ``system``). The key is written on every image of the request as a tag, and the job
ID is recorded in Prefect's result storage the moment the cloud returns it. Before submitting, the task looks
for that record and for images carrying the tag, and resumes what it finds, so a task retry, a flow retry or
a re-run after a crash never makes a second image.

Image kinds (``imsflow.validation.IMAGE_KINDS``): ``system`` is one image of the system disk;
``system-and-data`` is a *set* made by two requests, one after the other (the API page forbids
``instance_id`` with ``data_images``: "You cannot specify instance_id"): the system-disk image
(:func:`submit_image`, ``instance_id``), then one data-disk image per data disk (:func:`submit_data_images`,
``data_images`` only), named ``<image name>-<device>`` (``web-1-20261127-vdb``). Each request has its own key:
the system request the kind's key (:func:`request_key`), the data request one derived from it
(:func:`data_request_key`); each is recorded and tagged like any submission, so each is resumed or adopted on
its own. Every image carries ``imsflow-request=<its request's key>`` and ``imsflow-instance``; a data image
also ``imsflow-volume=<volume ID>``, so the set is found again (and told apart) by its tags alone.
:func:`plan_images` turns a request into what its kind asks IMS for (:class:`ImagePlan`).

``full-ecs`` is one image of the ECS's system disk and every data disk together, one request of its own
(``POST /v1/cloudimages/wholeimages/action``, creating_a_full-ecs_image.rst; :func:`whole_image_request`):
the ECS is backed up into a CBR vault (``vault_id``) and the image made of the backup. It is submitted by
:func:`submit_image` and followed by :func:`poll_job` as a system image is (one job, one image with
``__whole_image`` true), under the kind's own request key and the same tags.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.runtime import flow_run
from prefect.tasks import TaskRunNameCallbackWithParameters
from pydantic import BaseModel, Field

import runtime
from imsflow.client import CloudClient
from imsflow.errors import (
    DataVolumeNotFoundError,
    ImageNotFoundError,
    ImageSetIncompleteError,
    ImsflowError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    NoDataDiskError,
)
from imsflow.models import (
    CreateDataImagesRequest,
    CreateImageFromEcsRequest,
    CreateWholeImageRequest,
    DataImage,
    IamToken,
    Image,
    ImageListQuery,
    ImageTag,
    ImsJob,
    Server,
)
from imsflow.polling import PollPolicy
from imsflow.validation import ImageKind, parse_dotted_tag
from runtime.auth import client_for
from runtime.records import SUBMISSIONS, Submission
from runtime.retry import transient_retries

#: Tag keys imsflow writes on every image it makes (IMS tag keys: letters, digits, ``_`` and ``-``).
REQUEST_TAG = "imsflow-request"
INSTANCE_TAG = "imsflow-instance"
#: On each data-disk image: the volume (data disk) it was made of.
VOLUME_TAG = "imsflow-volume"
OWN_TAGS = (REQUEST_TAG, INSTANCE_TAG, VOLUME_TAG)
#: The longest image name IMS takes (``imsflow.validation.NAME_RULE``).
NAME_MAX = 128
#: Image statuses of an image that is, or is becoming, usable (``killed`` and ``deleted`` are not).
ALIVE = ("queued", "saving", "active")


def request_key(
    instance_id: str,
    name: str,
    idempotency_key: str | None = None,
    kind: ImageKind = "system",
    data_volumes: Sequence[str] = (),
) -> str:
    """32 hex characters that fit an IMS tag value (at most 43 characters).

    The kind (and the data disks chosen, if any) is part of the key when it is not ``system``, so a set and a
    system image of the same ECS and name are two requests; a ``system`` key is what it always was.
    """
    material = idempotency_key if idempotency_key else f"{instance_id}\n{name}"
    if kind != "system":
        material += f"\nkind={kind}"
        if data_volumes:
            material += "\nvolumes=" + ",".join(sorted(set(data_volumes)))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def data_request_key(key: str) -> str:
    """The key of the data-disk images' request of the set whose system request has ``key``: derived from
    it (so an explicit idempotency key carries over), 32 hex characters as every request key."""
    return hashlib.sha256(f"{key}\ndata".encode()).hexdigest()[:32]


def data_image_name(name: str, device: str | None, index: int) -> str:
    """``<image name>-<device>`` (``web-1-20261127-vdb``; ``-disk<index>`` when the ECS names no device),
    the image name cut so that the whole stays within IMS's 128 characters."""
    suffix = device or f"disk{index}"
    return f"{name[: NAME_MAX - len(suffix) - 1]}-{suffix}"


class ImagePlan(BaseModel):
    """What a kind asks IMS for: the system-disk image, and for ``system-and-data`` the data-disk images (a
    request of their own: the page forbids ``instance_id`` with ``data_images``)."""

    system: CreateImageFromEcsRequest
    data: CreateDataImagesRequest | None = None
    #: ``full-ecs``: the full-ECS image's request, sent instead of ``system`` (which names and tags it).
    whole: CreateWholeImageRequest | None = None

    @property
    def volumes(self) -> list[str]:
        """The data disks of the set (none for a system image)."""
        return self.data.volumes if self.data is not None else []


def data_images_request(
    request: CreateImageFromEcsRequest, server: Server, data_volumes: Sequence[str] = ()
) -> CreateDataImagesRequest:
    """The data-disk images of ``request``'s set: one ``data_images`` member per data disk of ``server`` (only
    ``data_volumes``, when given), in device order, named by :func:`data_image_name`, described and tagged as
    the system image (no ``instance_id``).

    Raises ``NoDataDiskError`` when the ECS has no data disk, ``DataVolumeNotFoundError`` when a volume asked
    for is not one of its data disks: both before anything is stopped or submitted.
    """
    disks = server.data_volumes
    what = f"ECS {server.name} ({server.id})"
    if not disks:
        raise NoDataDiskError(f"{what} has no data disk: a system-and-data image set needs at least one")
    if data_volumes:
        ids = {d.id for d in disks}
        unknown = [v for v in dict.fromkeys(data_volumes) if v not in ids]
        if unknown:
            system = server.system_volume_id
            named = ", ".join(f"{v} (its system disk)" if v == system else v for v in unknown)
            has = ", ".join(f"{d.id} ({d.device_name or '?'})" for d in disks)
            raise DataVolumeNotFoundError(f"not a data disk of {what}: {named}; its data disks: {has}")
        disks = [d for d in disks if d.id in set(data_volumes)]
    # A data image is tagged as its system image (the user's tags; imsflow's are added at submission).
    theirs = _theirs(request.tags, request.image_tags) or None
    members = [
        DataImage(
            name=data_image_name(request.name, disk.device_name, index),
            volume_id=disk.id,
            description=request.description,
            image_tags=theirs,
        )
        for index, disk in enumerate(disks, start=1)
    ]
    return CreateDataImagesRequest(data_images=members, enterprise_project_id=request.enterprise_project_id)


def whole_image_request(request: CreateImageFromEcsRequest, vault_id: str | None) -> CreateWholeImageRequest:
    """The full-ECS image of ``request``'s ECS (the ECS form of creating_a_full-ecs_image.rst): the same name,
    description, tags, memory and enterprise project, and the CBR vault the ECS is backed up into."""
    return CreateWholeImageRequest(
        name=request.name,
        instance_id=request.instance_id,
        vault_id=vault_id,
        description=request.description,
        tags=request.tags,
        image_tags=request.image_tags,
        enterprise_project_id=request.enterprise_project_id,
        min_ram=request.min_ram,
        max_ram=request.max_ram,
    )


def set_volumes(plan: ImagePlan) -> list[str]:
    """The data disks of the plan's image set (none for a system image)."""
    return plan.volumes


_EcsRequest = TypeVar("_EcsRequest", bound=CreateImageFromEcsRequest | CreateWholeImageRequest)


def with_imsflow_tags(request: _EcsRequest, key: str) -> _EcsRequest:
    """The request with imsflow's own tags added (as ``image_tags``, which IMS merges by key)."""
    ours = [ImageTag(key=REQUEST_TAG, value=key), ImageTag(key=INSTANCE_TAG, value=request.instance_id or "")]
    kept = _theirs(request.tags, request.image_tags)
    # model_copy keeps the model's class; mypy sees only the bound's union.
    return cast("_EcsRequest", request.model_copy(update={"tags": None, "image_tags": kept + ours}))


def with_data_tags(request: CreateDataImagesRequest, key: str, instance_id: str) -> CreateDataImagesRequest:
    """The data-disk images' request with imsflow's own tags on every member: ``imsflow-request=<key>`` (the
    data request's own key), ``imsflow-instance=<the ECS>`` and ``imsflow-volume=<its volume ID>``."""
    ours = [ImageTag(key=REQUEST_TAG, value=key), ImageTag(key=INSTANCE_TAG, value=instance_id)]
    members = [
        member.model_copy(
            update={
                "tags": None,
                "image_tags": _theirs(member.tags, member.image_tags)
                + ours
                + [ImageTag(key=VOLUME_TAG, value=member.volume_id)],
            }
        )
        for member in request.data_images
    ]
    return request.model_copy(update={"data_images": members})


def _theirs(tags: list[str] | None, image_tags: list[ImageTag] | None) -> list[ImageTag]:
    theirs = list(image_tags or [])
    if tags:
        # IMS takes either tags or image_tags, not both: fold "key.value" strings into image_tags.
        theirs += [ImageTag(key=k, value=v) for k, v in map(parse_dotted_tag, tags)]
    return [t for t in theirs if t.key not in OWN_TAGS]


@task(
    name="plan-images",
    task_run_name="plan-images[{request.instance_id}/{kind}]",
    **transient_retries(),
)
async def plan_images(
    request: CreateImageFromEcsRequest,
    kind: ImageKind,
    data_volumes: list[str],
    token: IamToken | None,
    vault_id: str | None = None,
) -> ImagePlan:
    """What ``kind`` asks IMS for, read from the ECS: the one place that knows the kinds' requests.

    ``system``: the request as it is (no call). ``system-and-data``: the request, and the data-disk images'
    request (:func:`data_images_request`, from the ECS's attached volumes; ``data_volumes`` chooses among
    them). ``full-ecs``: the full-ECS image's request (:func:`whole_image_request`, into the CBR vault
    ``vault_id``); the ECS is read to say what it holds (its disks are all in the image).
    """
    if kind == "system":
        return ImagePlan(system=request)
    async with client_for(token) as client:
        server = await client.ecs.get_server(request.instance_id)
    if kind == "full-ecs":
        data_disks = len(server.data_volumes)
        runtime.report(
            "plan-images",
            f"{server.name}: one full-ECS image of its system disk and {data_disks} data disk(s)"
            + (f", backed up into vault {vault_id}" if vault_id else ""),
        )
        return ImagePlan(system=request, whole=whole_image_request(request, vault_id))
    data = data_images_request(request, server, data_volumes)
    disks = ", ".join(m.name for m in data.data_images)
    runtime.report(
        "plan-images",
        f"{server.name}: system disk, then {len(data.data_images)} data disk(s): {disks}",
    )
    return ImagePlan(system=request, data=data)


class DataImageResult(BaseModel):
    """One data-disk image of a set: the image, and the volume (data disk) it was made of."""

    image_id: str
    name: str
    volume_id: str | None
    status: str


class ImageResult(BaseModel):
    """The image a request made (its system image), and the data-disk images of its set, if any."""

    image_id: str
    job_id: str | None
    name: str
    status: str
    #: How long the job took by the cloud's own begin/end times (None when adopted or not reported); the
    #: fleet flow expects the next jobs to take about as long.
    job_seconds: float | None = None
    #: The data-disk images of a ``system-and-data`` set, in the order of its disks (devices).
    data_images: list[DataImageResult] = Field(default_factory=list)
    #: The job that made the data-disk images (a request of its own), if any.
    data_job_id: str | None = None
    #: How long the data-disk job took (as ``job_seconds``), if any.
    data_job_seconds: float | None = None

    @property
    def job_durations(self) -> list[float]:
        """Each job's own duration (the system job, then the data-disk job): what a poller of the next job
        of either kind expects. Never their sum: a set is two jobs one after the other, each polled alone."""
        return [s for s in (self.job_seconds, self.data_job_seconds) if s is not None]

    @property
    def image_ids(self) -> list[str]:
        """Every image of the set: the system image first, then each data image."""
        return [self.image_id, *(d.image_id for d in self.data_images)]


async def _resume(client: CloudClient, record: Submission) -> Submission | None:
    """The recorded submission if its job is still alive (or done), else None: a new attempt may start."""
    if record.job_id is None:
        return None
    try:
        job = await client.ims.get_job(record.job_id)
    except (JobNotFoundError, ImageNotFoundError):
        return None
    if job.status == "FAIL":
        if record.flow_run_id is not None and record.flow_run_id == current_flow_run_id():
            # A flow retry of the run that submitted it: the request failed, and it stays failed. Only a new
            # run (the user's decision) makes a new attempt.
            raise JobFailedError(
                job_id=job.job_id,
                error_code=job.error_code,
                fail_reason=job.fail_reason,
                request_id=job.request_id,
            )
        return None  # that attempt is over; a re-run is a new attempt
    return record.model_copy(update={"how": "resumed"})


async def resume_recorded(client: CloudClient, key: str) -> Submission | None:
    """The job recorded for request ``key`` (:data:`runtime.records.SUBMISSIONS`), if it is still alive."""
    record = await SUBMISSIONS.get(key)
    return None if record is None else await _resume(client, record)


async def raise_if_failed_in_this_run(key: str, token: IamToken | None) -> None:
    """On a flow retry: end with the failure of the image job this very run submitted, before touching the
    ECS again (a retry must neither resubmit nor stop and start the ECS once more for a failed request)."""
    record = await SUBMISSIONS.get(key)
    if record is None or record.flow_run_id is None or record.flow_run_id != current_flow_run_id():
        return
    async with client_for(token) as client:
        await _resume(client, record)


def current_flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id is not None else None


def _is_data(image: Image) -> bool:
    return VOLUME_TAG in image.tag_map or image.is_data_image


def _tagged_set(images: list[Image], volumes: Sequence[str]) -> tuple[Image | None, list[Image], list[str]]:
    """The system image, the data images (in the order of ``volumes``, then any other) and the volumes of
    ``volumes`` that have no image, among the images of one request."""
    system = next((i for i in images if not _is_data(i)), None)
    data = [i for i in images if _is_data(i)]
    order = {volume: n for n, volume in enumerate(volumes)}
    data.sort(key=lambda i: (order.get(i.tag_map.get(VOLUME_TAG, ""), len(order)), i.name or ""))
    have = {i.tag_map.get(VOLUME_TAG) for i in data}
    return system, data, [v for v in volumes if v not in have]


def _adopted(key: str, images: list[Image]) -> Submission:
    first = images[0]
    return Submission(
        request_key=key,
        image_id=first.id,
        image_ids=[i.id for i in images] if len(images) > 1 else [],
        how="adopted",
        submitted_at=first.created_at or datetime.now(UTC),
    )


async def adopt_tagged(client: CloudClient, key: str, volumes: Sequence[str] = ()) -> Submission | None:
    """The images of request ``key`` that are there already (their job ID lost), to follow up instead of
    submitting again; None when there are none.

    Without ``volumes``: a system request, its system-disk image. With ``volumes``: a data-disk images'
    request (:func:`data_request_key`), one image per volume. Such a request is all or nothing: one job makes
    all of its images at once, so one with a member missing was cut by hand (an image deleted). Submitting it
    again would duplicate the members still there: ``ImageSetIncompleteError`` instead.
    """
    images = await client.ims.list_images(ImageListQuery.tagged(REQUEST_TAG, key))
    alive = [i for i in images if i.status in ALIVE]
    if not alive:
        return None
    system, data, missing = _tagged_set(alive, volumes)
    if not volumes:
        return None if system is None else _adopted(key, [system])
    if missing:
        lacks = ", ".join(f"the image of volume {v}" for v in missing)
        raise ImageSetIncompleteError(
            f"request {key} has {len(alive)} image(s) ({', '.join(i.id for i in alive)}) but lacks "
            f"{lacks}: one was deleted, and making them again would duplicate the others"
        )
    return _adopted(key, data)


async def _made(client: CloudClient, key: str, volumes: Sequence[str]) -> Submission | None:
    """Request ``key``'s images if made (a system request without ``volumes``, a data request with)."""
    record = await SUBMISSIONS.get(key)
    if record is not None and record.job_id is not None:
        try:
            job = await client.ims.get_job(record.job_id)
        except (JobNotFoundError, ImageNotFoundError):
            pass
        else:
            if job.status == "SUCCESS":
                ids = job.image_ids
                return record.model_copy(
                    update={
                        "how": "resumed",
                        "image_id": ids[0] if ids else job.image_id,
                        "image_ids": ids if len(ids) > 1 else [],
                    }
                )
    images = await client.ims.list_images(ImageListQuery.tagged(REQUEST_TAG, key))
    active = [i for i in images if i.status == "active"]
    system, data, missing = _tagged_set(active, volumes)
    if not volumes:
        return None if system is None else _adopted(key, [system])
    if missing:
        return None
    return _adopted(key, data)


async def made_image(client: CloudClient, key: str, volumes: Sequence[str] = ()) -> Submission | None:
    """The image (set) of the request with key ``key`` if it is made already, else ``None`` (none yet, or
    still being made).

    Made: the system request's recorded job (:data:`runtime.records.SUBMISSIONS`) succeeded or its tagged
    system image is active; and with ``volumes`` (the data disks of a ``system-and-data`` set), the data
    request's too (:func:`data_request_key`: its job succeeded, or a tagged image of each volume is active).
    The submission returned is the system request's, with every image of the set in ``image_ids``. Asked
    before the ECS is stopped: an image that is there needs no stopped ECS, and the run only follows it up
    (``flows/pipeline.py``).
    """
    system = await _made(client, key, ())
    if system is None or not volumes:
        return system
    data = await _made(client, data_request_key(key), volumes)
    if data is None:
        return None
    ids = [system.image_id or "", *(data.image_ids or [data.image_id or ""])]
    return system.model_copy(update={"image_ids": ids})


async def _submit(
    client: CloudClient,
    step: str,
    key: str,
    volumes: Sequence[str],
    body: CreateImageFromEcsRequest | CreateDataImagesRequest | CreateWholeImageRequest,
) -> Submission:
    found = await resume_recorded(client, key) or await adopt_tagged(client, key, volumes)
    if found is not None:
        images = ", ".join(found.image_ids) or found.image_id or "named by the job"
        runtime.report(step, f"{found.how} job {found.job_id or '-'} (images {images})")
        return found
    if isinstance(body, CreateWholeImageRequest):
        job_id = await client.ims.create_whole_image(body)
    else:
        job_id = await client.ims.create_image_from_ecs(body)
    submission = Submission(
        request_key=key, job_id=job_id, submitted_at=datetime.now(UTC), flow_run_id=current_flow_run_id()
    )
    await SUBMISSIONS.put(key, submission)
    return submission


@task(
    name="submit-image",
    task_run_name="submit-image[{request.instance_id}/{request.name}]",
    **transient_retries(),
)
async def submit_image(
    request: CreateImageFromEcsRequest | CreateWholeImageRequest, key: str, token: IamToken | None
) -> Submission:
    """Submit ``POST /v2/cloudimages/action`` (the system-disk image; a :class:`CreateWholeImageRequest`:
    ``POST /v1/cloudimages/wholeimages/action``, the full-ECS image) unless this request already has a job
    or an image.

    Every attempt reconciles first, which is what makes retrying a failed POST safe: if the cloud applied
    it but the answer was lost, the image with our tag is found and adopted instead of made again.
    """
    async with client_for(token) as client:
        submission = await _submit(client, "submit-image", key, (), with_imsflow_tags(request, key))
    if submission.how == "submitted":
        runtime.report("submit-image", f"submitted job {submission.job_id}")
    return submission


@task(
    name="submit-data-images",
    task_run_name="submit-data-images[{instance_id}]",
    **transient_retries(),
)
async def submit_data_images(
    request: CreateDataImagesRequest, key: str, instance_id: str, token: IamToken | None
) -> Submission:
    """Submit ``POST /v2/cloudimages/action`` with ``data_images`` only (no ``instance_id``: the page forbids
    it) unless this request (``key``, :func:`data_request_key`) already has a job or its images, as
    :func:`submit_image` does. ``instance_id`` is the data disks' ECS, written on every image as a tag."""
    async with client_for(token) as client:
        submission = await _submit(
            client, "submit-data-images", key, request.volumes, with_data_tags(request, key, instance_id)
        )
    if submission.how == "submitted":
        runtime.report(
            "submit-data-images",
            f"submitted job {submission.job_id} ({len(request.data_images)} data images)",
        )
    return submission


def _percent(job: ImsJob) -> float | None:
    if job.status == "SUCCESS":
        return 100.0
    value = job.entities.process_percent if job.entities is not None else None
    return float(value) if value is not None else None


async def _wait_for_active(client: CloudClient, image_id: str, timeout: float) -> Image:
    """The job can report SUCCESS a moment before the image record turns active.

    Every look is inside the wait, so its transient errors are the wait's to absorb (``imsflow.polling``).
    """
    image: Image | None = None

    async def settled() -> bool:
        nonlocal image
        image = await client.ims.get_image(image_id)
        return image.status in ("active", "killed", "deleted")

    try:
        await runtime.wait_until(settled, timeout=timeout, what=f"image {image_id} to become active")
    except TimeoutError:
        # An adopted image (its job ID lost with the create answer) whose job is stuck or slow: a named
        # error that says what was seen, never a bare TimeoutError.
        raise JobTimeoutError(
            job_id=f"of image {image_id}",
            last_status=image.status if image is not None else None,
            waited_seconds=timeout,
        ) from None
    assert image is not None  # the wait returned: settled() saw it
    if image.status != "active":
        raise JobFailedError(
            job_id=None, error_code=None, fail_reason=f"image {image_id} ended {image.status}, not active"
        )
    return image


def _poll_job_name(parameters: dict[str, Any]) -> str:
    """``poll-job[<job ID>]`` (an adopted image has no job: ``poll-job[image <image ID>]``); never the
    request key, which looks like a job ID but is not one."""
    submission = parameters.get("submission")
    job_id = getattr(submission, "job_id", None)
    if job_id:
        return f"poll-job[{job_id}]"
    return f"poll-job[image {getattr(submission, 'image_id', None) or '-'}]"


class DataImagesResult(BaseModel):
    """The data-disk images a data request made (in the order of its disks), and its job."""

    job_id: str | None
    job_seconds: float | None = None
    images: list[DataImageResult]


async def _follow(
    submission: Submission,
    token: IamToken | None,
    timeout: float,
    policy: PollPolicy | None,
    progress_artifact: bool,
    step: str,
) -> tuple[list[Image], float | None]:
    """Follow the job until SUCCESS or FAIL, showing progress; its images once all are active, and how long
    the job took by the cloud's clock."""
    settings = runtime.settings()
    policy = policy or PollPolicy(
        initial_delay=settings.poll_initial_delay, max_interval=settings.poll_max_interval
    )
    progress_id = (
        await acreate_progress_artifact(
            progress=0.0, description=f"image job {submission.job_id or submission.image_id}"
        )
        if progress_artifact
        else None
    )
    last_percent = -1.0

    async def show(job: ImsJob, elapsed: float) -> None:
        nonlocal last_percent
        percent = _percent(job)
        if percent is not None and percent != last_percent:
            last_percent = percent
            if progress_id is not None:
                await aupdate_progress_artifact(progress_id, progress=percent)
            runtime.report(step, f"{job.status} {percent:.0f}% after {elapsed:.0f} s")

    job_seconds: float | None = None
    async with client_for(token) as client:
        job_id = submission.job_id
        if job_id is not None:

            async def fetch() -> ImsJob:
                return await client.ims.get_job(job_id)

            job = await runtime.wait_for_job(
                fetch, job_id=job_id, timeout=timeout, policy=policy, on_update=show, percent_of=_percent
            )
            image_ids = job.image_ids
            if job.begin_time is not None and job.end_time is not None:
                job_seconds = (job.end_time - job.begin_time).total_seconds()
            if not image_ids:
                raise JobFailedError(
                    job_id=job_id,
                    error_code=None,
                    fail_reason="job succeeded without an image ID",
                    request_id=job.request_id,
                )
        else:
            assert submission.image_id is not None
            image_ids = submission.image_ids or [submission.image_id]
        # One job makes all of its images: every one is active by the time the job says SUCCESS, or a moment
        # after; each is looked at in turn (the wait is the same job's, so one timeout covers them all).
        images = [await _wait_for_active(client, image_id, timeout) for image_id in image_ids]
    if progress_id is not None:
        await aupdate_progress_artifact(progress_id, progress=100.0)
    if job_seconds is not None:
        get_run_logger().info("job %s took %.0f s by the cloud's clock", job_id, job_seconds)
    return images, job_seconds


def _data_result(image: Image) -> DataImageResult:
    return DataImageResult(
        image_id=image.id,
        name=image.name or "",
        volume_id=image.tag_map.get(VOLUME_TAG),
        status=image.status or "",
    )


@task(
    name="poll-job",
    task_run_name=cast("TaskRunNameCallbackWithParameters", _poll_job_name),
    # Every cloud call of poll-job is inside a wait (imsflow.polling), which absorbs transient errors and
    # marks the one that ends it: retry_if_transient does not retry that one. Worst case for a status query
    # that keeps failing: TRANSIENT_TOLERANCE + 1 = 5 calls (runtime/retry.py).
    **transient_retries(),
)
async def poll_job(
    submission: Submission,
    token: IamToken | None,
    timeout: float,
    policy: PollPolicy | None = None,
    progress_artifact: bool = True,
) -> ImageResult:
    """Follow the (system-disk image's) job until SUCCESS or FAIL, showing progress; return the image once
    it is active.

    ``progress_artifact=False`` skips the progress artifact: the fleet flow has its own table, and each
    update is a Prefect API write on the poll loop's path (under a fleet's load, up to seconds each).
    """
    images, job_seconds = await _follow(submission, token, timeout, policy, progress_artifact, "poll-job")
    image = next((i for i in images if not _is_data(i)), images[0])
    runtime.report("poll-job", f"image {image.id} is {image.status}")
    return ImageResult(
        image_id=image.id,
        job_id=submission.job_id,
        name=image.name or "",
        status=image.status or "",
        job_seconds=job_seconds,
    )


@task(
    name="poll-data-job",
    task_run_name=cast("TaskRunNameCallbackWithParameters", _poll_job_name),
    **transient_retries(),
)
async def poll_data_job(
    submission: Submission,
    token: IamToken | None,
    timeout: float,
    volumes: list[str],
    policy: PollPolicy | None = None,
    progress_artifact: bool = True,
) -> DataImagesResult:
    """Follow the data-disk images' job as :func:`poll_job` does; its images, in the order of ``volumes``."""
    images, job_seconds = await _follow(
        submission, token, timeout, policy, progress_artifact, "poll-data-job"
    )
    _, data, _ = _tagged_set(images, volumes)
    data += [i for i in images if not _is_data(i)]  # none expected: a data job makes data images only
    results = [_data_result(i) for i in data]
    for member in results:
        runtime.report(
            "poll-data-job",
            f"data image {member.image_id} ({member.name}, volume {member.volume_id or '?'}) "
            f"is {member.status}",
        )
    return DataImagesResult(job_id=submission.job_id, job_seconds=job_seconds, images=results)


__all__ = [
    "INSTANCE_TAG",
    "REQUEST_TAG",
    "VOLUME_TAG",
    "DataImageResult",
    "DataImagesResult",
    "ImagePlan",
    "ImageResult",
    "ImsflowError",
    "Submission",
    "data_image_name",
    "data_images_request",
    "data_request_key",
    "made_image",
    "plan_images",
    "poll_data_job",
    "poll_job",
    "request_key",
    "set_volumes",
    "submit_data_images",
    "submit_image",
    "whole_image_request",
    "with_data_tags",
    "with_imsflow_tags",
]
