"""Imaging one ECS: stopped check → submit → poll → start again. The one place these steps run in order.

A ``system-and-data`` set is two requests (the API page forbids ``instance_id`` with ``data_images``):
check → submit the system-disk image → poll it → submit the data-disk images → poll them → start again. The
ECS stays stopped until both jobs ended (while one runs, IMS refuses the other: the ECS has a task in
progress). Each request has its own key and record (``tasks.image.request_key``/``data_request_key``), so a
re-run after a crash at any point resumes or adopts what each made and submits only what is missing.

A ``full-ecs`` image is one request (``POST /v1/cloudimages/wholeimages/action``): check → submit → poll, with
the ECS taken as it is. The page asks for no stopped ECS (the ECS is backed up into a CBR vault, then the
image is made of the backup) and its backup forms say "If an ECS is in Stopped state, do not start it":
the check is ``check-ecs-ready`` (running or stopped, no task in progress), and the ECS is never stopped or
started for this kind, whatever ``stop_if_running`` and ``restart`` say.

The single-image flow (``flows/create_image.py``) and the fleet (``flows/fleet.py``) both call
:func:`image_one_ecs`; so will new image kinds. The flows keep what is theirs (the token, dry runs,
artifacts, events, a fleet's lanes and rows); the order of the steps and the power-state rules live here:

* A running ECS is refused, unless ``stop_if_running``: then it is stopped (SOFT) and the check records that
  imsflow stopped it (``runtime.records.PowerRecord``), so a retry or a re-run after a crash still knows.
* No needless power cycle: before it stops (or refuses) an ECS that is not stopped, the check looks at the
  request's image (``tasks.image.made_image``: the recorded job succeeded, or an image with the request's
  tag is active). If it is made already, the ECS is never stopped: a re-run after a crash that came after
  the image (or after the start was sent) only makes sure the ECS runs again, and a re-run of a finished
  request leaves it alone. A stopped ECS passes as before; submit-image then resumes or adopts the image.
* If imsflow stopped it and ``restart`` is set, it is started again once the image job ended: after SUCCESS
  (a failed start then fails the call), and after FAIL or any other error (a failed start is only logged, so
  that the error raised is the one that made the imaging fail). The start is recorded before it is sent
  (``PowerRecord.start_sent``) and the record cleared once the ECS runs; a re-run that finds the ECS
  powering on waits for that start, one that finds it running only clears the record. An ECS imsflow did
  not stop is never started.
* Never after :class:`~imsflow.errors.JobTimeoutError`: the job may still be running, and IMS needs the ECS
  stopped until it ends (ECS refuses the start meanwhile). The power record stays, so a re-run resumes the
  job and then starts the ECS.
* Not on cancellation either (``CancelledError`` is no ``Exception``): the power record covers it too.
* On a flow retry after a failed image job of this very run, that failure is raised again before the ECS is
  touched: a retry neither submits a second job nor stops and starts the ECS once more.
* One run at a time per ECS (``runtime.exclusive``): all of the above runs under the ECS's lock, so an ad-hoc
  run and a fleet, or two ad-hoc runs, never image the same ECS at once. A run that finds the ECS held waits
  for it (at most ``ecs_wait`` seconds, by default the job timeout), saying which run holds it; a lock whose
  holder died does not block. Different ECSs never wait for each other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel

import runtime
from imsflow.errors import JobTimeoutError
from imsflow.models import CreateImageFromEcsRequest, IamToken
from imsflow.polling import PollPolicy
from imsflow.validation import ImageKind
from runtime.exclusive import exclusive_ecs
from tasks.ecs import EcsCheck, check_ecs_ready, check_ecs_stopped, start_ecs
from tasks.image import (
    ImagePlan,
    ImageResult,
    Submission,
    data_request_key,
    plan_images,
    poll_data_job,
    poll_job,
    raise_if_failed_in_this_run,
    request_key,
    submit_data_images,
    submit_image,
)

#: The steps :func:`image_one_ecs` times, in order (keys of :attr:`ImageOutcome.seconds`); ``plan-images``,
#: ``submit-data-images`` and ``poll-data-job`` only for a kind other than ``system``.
STEPS = (
    "plan-images",
    "check-ecs-stopped",
    "submit-image",
    "poll-job",
    "submit-data-images",
    "poll-data-job",
    "check-ecs-ready",
)


class ImageOutcome(BaseModel):
    """One ECS imaged: what the check found, how the job came about, the active image, and step times."""

    check: EcsCheck
    #: The system-disk image's request.
    submission: Submission
    #: The data-disk images' request (``system-and-data``), a request of its own.
    data_submission: Submission | None = None
    image: ImageResult
    #: imsflow stopped the ECS for this image and started it again.
    restarted: bool = False
    #: Seconds per step (:data:`STEPS`), on the runtime's clock.
    seconds: dict[str, float]

    @property
    def how(self) -> str:
        """``submitted``, ``resumed`` or ``adopted``. For a set (two requests): ``submitted`` when this run
        submitted either, else ``adopted`` when it adopted either (an answer lost), else ``resumed``."""
        hows = {self.submission.how}
        if self.data_submission is not None:
            hows.add(self.data_submission.how)
        return next(how for how in ("submitted", "adopted", "resumed") if how in hows)


@contextmanager
def timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    """Record how long a step took, on the runtime's clock (a step that raises is not recorded)."""
    clock = runtime.current().clock
    started = clock()
    yield
    seconds[step] = clock() - started


async def image_one_ecs(
    request: CreateImageFromEcsRequest,
    *,
    token: IamToken | None,
    stop_if_running: bool,
    restart: bool,
    timeout: float,
    key: str | None = None,
    kind: ImageKind = "system",
    data_volumes: Sequence[str] = (),
    poll_policy: PollPolicy | None = None,
    progress_artifact: bool = True,
    ecs_wait: float | None = None,
    vault_id: str | None = None,
) -> ImageOutcome:
    """Make the image ``request`` asks for from its ECS, exactly once, and return it once it is active.

    ``kind`` is what to make (``imsflow.validation.IMAGE_KINDS``): ``system-and-data`` makes the system image,
    then one data-disk image per data disk of the ECS (``data_volumes``, when given: only those) in a second
    job, each request exactly once; it is planned first (``tasks.image.plan_images``: a refusal comes
    before the ECS is touched). ``full-ecs`` makes one full-ECS image (every disk) with the ECS as it is:
    ``stop_if_running`` and ``restart`` do not apply to it.
    ``key`` is the (system) request key (``tasks.image.request_key``; by default from instance ID, image name
    and, for another kind than ``system``, the kind and the data disks chosen); the data request's key is
    derived from it (``tasks.image.data_request_key``).
    ``timeout`` is how long to wait for the image job, in seconds; ``poll_policy`` how to poll it (the
    settings' defaults when None); ``progress_artifact=False`` skips the job's progress artifact.
    ``ecs_wait`` is how long to wait for another run imaging the same ECS, in seconds (``timeout`` when
    None; 0 refuses at once).
    ``vault_id`` is the CBR vault a ``full-ecs`` image backs the ECS up into (the page: mandatory where the
    cloud makes CBR backups); ignored by the other kinds.

    Raises what the steps raise: ``DataDiskError`` (no data disk, or a volume that is none of the ECS's),
    ``ImageSetIncompleteError`` (a member of the request's set was deleted), ``EcsNotReadyError`` (running
    and not to be stopped while the image is still to be made, or a refused stop or start;
    ``runtime.exclusive.EcsHeldError`` when another run kept the ECS for longer than ``ecs_wait``),
    ``JobFailedError``, ``JobTimeoutError`` (the ECS is then left stopped), ``ImsflowError``.
    Must run inside a flow run.
    """
    logger = get_run_logger()
    key = key or request_key(request.instance_id, request.name, kind=kind, data_volumes=data_volumes)
    wait = timeout if ecs_wait is None else ecs_wait
    async with exclusive_ecs(request.instance_id, wait=wait, logger=logger):
        return await _image(
            request,
            key=key,
            kind=kind,
            data_volumes=list(data_volumes),
            token=token,
            stop_if_running=stop_if_running,
            restart=restart,
            timeout=timeout,
            poll_policy=poll_policy,
            progress_artifact=progress_artifact,
            vault_id=vault_id,
        )


async def _image(
    request: CreateImageFromEcsRequest,
    *,
    key: str,
    kind: ImageKind,
    data_volumes: list[str],
    token: IamToken | None,
    stop_if_running: bool,
    restart: bool,
    timeout: float,
    poll_policy: PollPolicy | None,
    progress_artifact: bool,
    vault_id: str | None = None,
) -> ImageOutcome:
    """:func:`image_one_ecs` once the ECS is this run's."""
    logger = get_run_logger()
    seconds: dict[str, float] = {}

    data_key = data_request_key(key)
    if flow_run.get_run_count() > 1:
        await raise_if_failed_in_this_run(key, token)
        if kind == "system-and-data":
            await raise_if_failed_in_this_run(data_key, token)
    plan = ImagePlan(system=request)
    if kind != "system":
        # What the kind asks IMS for, read from the ECS (its data disks): refused here, before any stop.
        with timed(seconds, "plan-images"):
            plan = await plan_images(request, kind, data_volumes, token, vault_id)
    if plan.whole is not None:
        # A full-ECS image: the ECS as it is, never stopped nor started (see the module's docstring).
        with timed(seconds, "check-ecs-ready"):
            check = await check_ecs_ready(request.instance_id, token, request_key=key)
        with timed(seconds, "submit-image"):
            submission = await submit_image(plan.whole, key, token)
        with timed(seconds, "poll-job"):
            image = await poll_job(
                submission, token, timeout=timeout, policy=poll_policy, progress_artifact=progress_artifact
            )
        return ImageOutcome(check=check, submission=submission, image=image, seconds=seconds)
    with timed(seconds, "check-ecs-stopped"):
        check = await check_ecs_stopped(
            request.instance_id,
            token,
            stop_if_running=stop_if_running,
            request_key=key,
            set_volumes=plan.volumes,
        )
    owes_start = check.stopped_by_us and restart
    data_submission: Submission | None = None
    try:
        with timed(seconds, "submit-image"):
            submission = await submit_image(plan.system, key, token)
        with timed(seconds, "poll-job"):
            image = await poll_job(
                submission, token, timeout=timeout, policy=poll_policy, progress_artifact=progress_artifact
            )
        if plan.data is not None:
            # The second request, once the first job ended (IMS refuses it while the ECS has a job running).
            with timed(seconds, "submit-data-images"):
                data_submission = await submit_data_images(plan.data, data_key, request.instance_id, token)
            with timed(seconds, "poll-data-job"):
                data = await poll_data_job(
                    data_submission,
                    token,
                    timeout=timeout,
                    volumes=plan.volumes,
                    policy=poll_policy,
                    progress_artifact=progress_artifact,
                )
            image = image.model_copy(
                update={
                    "data_images": data.images,
                    "data_job_id": data.job_id,
                    "data_job_seconds": data.job_seconds,
                }
            )
    except JobTimeoutError:
        if owes_start:
            # The job may still be running, and IMS needs the ECS stopped until it ends (ECS refuses a start
            # meanwhile). imsflow's power record stays: a re-run resumes the job and then starts the ECS.
            logger.warning("leaving %s stopped: its image job has not ended; run again to resume", check.name)
        raise
    except Exception:  # not on cancellation: the power record lets a re-run start the ECS
        if owes_start:
            await _start_again(check, token, failing=True)
        raise
    if owes_start:
        await _start_again(check, token, failing=False)
    return ImageOutcome(
        check=check,
        submission=submission,
        data_submission=data_submission,
        image=image,
        restarted=owes_start,
        seconds=seconds,
    )


async def _start_again(check: EcsCheck, token: IamToken | None, *, failing: bool) -> None:
    """Start the ECS imsflow stopped. When the imaging failed anyway, a failed start is logged, so that the
    error raised is the one that made it fail."""
    logger = get_run_logger()
    if check.image_made:  # never stopped by this run: a start may be under way already
        logger.info("making sure %s runs again, as it was running before imsflow stopped it", check.name)
    else:
        logger.info("starting %s again, as it was running before", check.name)
    try:
        await start_ecs(check.instance_id, token)
    except Exception as exc:
        if not failing:
            raise
        logger.error("could not start %s again (start it by hand): %s", check.name, exc)


__all__ = ["STEPS", "ImageOutcome", "image_one_ecs", "timed"]
