"""Steps 3 and 4: submit the image job exactly once, then follow it to an active image.

Exactly once: every request has a key (from instance ID + image name, or an explicit idempotency key). The
key is written on the image as a tag, and the job ID is recorded in Prefect's result storage the moment the
cloud returns it. Before submitting, the task looks for that record and for an image carrying the tag, and
resumes what it finds, so a task retry, a flow retry or a re-run after a crash never makes a second image.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, cast

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.runtime import flow_run
from prefect.tasks import TaskRunNameCallbackWithParameters
from pydantic import BaseModel

import runtime
from imsflow.client import CloudClient
from imsflow.errors import (
    ImageNotFoundError,
    ImsflowError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
)
from imsflow.models import CreateImageFromEcsRequest, IamToken, Image, ImageListQuery, ImageTag, ImsJob
from imsflow.polling import PollPolicy
from imsflow.validation import parse_dotted_tag
from runtime.auth import client_for
from runtime.records import SUBMISSIONS, Submission
from runtime.retry import transient_retries

#: Tag keys imsflow writes on every image it makes (IMS tag keys: letters, digits, ``_`` and ``-``).
REQUEST_TAG = "imsflow-request"
INSTANCE_TAG = "imsflow-instance"


def request_key(instance_id: str, name: str, idempotency_key: str | None = None) -> str:
    """32 hex characters that fit an IMS tag value (at most 43 characters)."""
    material = idempotency_key if idempotency_key else f"{instance_id}\n{name}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def with_imsflow_tags(request: CreateImageFromEcsRequest, key: str) -> CreateImageFromEcsRequest:
    """The request with imsflow's own tags added (as ``image_tags``, which IMS merges by key)."""
    ours = [ImageTag(key=REQUEST_TAG, value=key), ImageTag(key=INSTANCE_TAG, value=request.instance_id or "")]
    theirs = list(request.image_tags or [])
    if request.tags:
        # IMS takes either tags or image_tags, not both: fold "key.value" strings into image_tags.
        theirs += [ImageTag(key=k, value=v) for k, v in map(parse_dotted_tag, request.tags)]
    kept = [t for t in theirs if t.key not in (REQUEST_TAG, INSTANCE_TAG)]
    return request.model_copy(update={"tags": None, "image_tags": kept + ours})


class ImageResult(BaseModel):
    image_id: str
    job_id: str | None
    name: str
    status: str
    #: How long the job took by the cloud's own begin/end times (None when adopted or not reported); the
    #: fleet flow expects the next jobs to take about as long.
    job_seconds: float | None = None


async def _resume(client: CloudClient, record: Submission) -> Submission | None:
    """The recorded submission if its job is still alive (or done), else None: a new attempt may start."""
    if record.job_id is None:
        return None
    try:
        job = await client.ims.get_job(record.job_id)
    except (JobNotFoundError, ImageNotFoundError):
        return None
    if job.status == "FAIL":
        if record.flow_run_id is not None and record.flow_run_id == _current_flow_run_id():
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
    if record is None or record.flow_run_id is None or record.flow_run_id != _current_flow_run_id():
        return
    async with client_for(token) as client:
        await _resume(client, record)


def _current_flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id is not None else None


async def adopt_tagged(client: CloudClient, key: str) -> Submission | None:
    images = await client.ims.list_images(ImageListQuery.tagged(REQUEST_TAG, key))
    alive = [i for i in images if i.status in ("queued", "saving", "active")]
    if not alive:
        return None
    image = alive[0]
    return Submission(
        request_key=key, image_id=image.id, how="adopted", submitted_at=image.created_at or datetime.now(UTC)
    )


async def made_image(client: CloudClient, key: str) -> Submission | None:
    """Request ``key``'s image if it is made already, else ``None`` (none yet, or still being made).

    Made: the recorded job (:data:`runtime.records.SUBMISSIONS`) succeeded, or an image with the request's
    tag is active (the image :func:`adopt_tagged` would adopt). Asked before the ECS is stopped: an image
    that is there needs no stopped ECS, and the run only follows it up (``flows/pipeline.py``).
    """
    record = await SUBMISSIONS.get(key)
    if record is not None and record.job_id is not None:
        try:
            job = await client.ims.get_job(record.job_id)
        except (JobNotFoundError, ImageNotFoundError):
            pass
        else:
            if job.status == "SUCCESS":
                return record.model_copy(update={"how": "resumed", "image_id": job.image_id})
    images = await client.ims.list_images(ImageListQuery.tagged(REQUEST_TAG, key))
    active = [i for i in images if i.status == "active"]
    if not active:
        return None
    image = active[0]
    return Submission(
        request_key=key, image_id=image.id, how="adopted", submitted_at=image.created_at or datetime.now(UTC)
    )


@task(
    name="submit-image",
    task_run_name="submit-image[{request.instance_id}/{request.name}]",
    **transient_retries(),
)
async def submit_image(request: CreateImageFromEcsRequest, key: str, token: IamToken | None) -> Submission:
    """Submit ``POST /v2/cloudimages/action`` unless this request already has a job or an image.

    Every attempt reconciles first, which is what makes retrying a failed POST safe: if the cloud applied
    it but the answer was lost, the image with our tag is found and adopted instead of made again.
    """
    async with client_for(token) as client:
        found = await resume_recorded(client, key) or await adopt_tagged(client, key)
        if found is not None:
            runtime.report(
                "submit-image", f"{found.how} job {found.job_id or '-'} (image {found.image_id or '-'})"
            )
            return found
        job_id = await client.ims.create_image_from_ecs(with_imsflow_tags(request, key))
    submission = Submission(
        request_key=key, job_id=job_id, submitted_at=datetime.now(UTC), flow_run_id=_current_flow_run_id()
    )
    await SUBMISSIONS.put(key, submission)
    runtime.report("submit-image", f"submitted job {job_id}")
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
    """Follow the job until SUCCESS or FAIL, showing progress; return the image once it is active.

    ``progress_artifact=False`` skips the progress artifact: the fleet flow has its own table, and each
    update is a Prefect API write on the poll loop's path (under a fleet's load, up to seconds each).
    """
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
            runtime.report("poll-job", f"{job.status} {percent:.0f}% after {elapsed:.0f} s")

    job_seconds: float | None = None
    async with client_for(token) as client:
        job_id = submission.job_id
        if job_id is not None:

            async def fetch() -> ImsJob:
                return await client.ims.get_job(job_id)

            job = await runtime.wait_for_job(
                fetch, job_id=job_id, timeout=timeout, policy=policy, on_update=show, percent_of=_percent
            )
            image_id = job.image_id
            if job.begin_time is not None and job.end_time is not None:
                job_seconds = (job.end_time - job.begin_time).total_seconds()
            if image_id is None:
                raise JobFailedError(
                    job_id=job_id,
                    error_code=None,
                    fail_reason="job succeeded without an image ID",
                    request_id=job.request_id,
                )
        else:
            assert submission.image_id is not None
            image_id = submission.image_id
        image = await _wait_for_active(client, image_id, timeout)
    if progress_id is not None:
        await aupdate_progress_artifact(progress_id, progress=100.0)
    if job_seconds is not None:
        get_run_logger().info("job %s took %.0f s by the cloud's clock", job_id, job_seconds)
    runtime.report("poll-job", f"image {image.id} is {image.status}")
    return ImageResult(
        image_id=image.id, job_id=job_id, name=image.name, status=image.status, job_seconds=job_seconds
    )


__all__ = [
    "INSTANCE_TAG",
    "REQUEST_TAG",
    "ImageResult",
    "ImsflowError",
    "Submission",
    "made_image",
    "poll_job",
    "request_key",
    "submit_image",
    "with_imsflow_tags",
]
