"""Step 2: make sure the ECS is stopped (and stop it when asked to); start it again afterwards.

Before stopping (or refusing) an ECS that is not stopped, the check asks whether the request's image is made
already (``tasks.image.made_image``): then nothing needs the ECS stopped, and it is left as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task
from pydantic import BaseModel

import runtime
from imsflow.client import CloudClient
from imsflow.errors import EcsNotReadyError, ImsflowError
from imsflow.models import IamToken, Server
from runtime.auth import client_for
from runtime.naming import name_after_server
from runtime.records import POWER, PowerRecord
from runtime.retry import transient_retries
from tasks.image import made_image


async def _stopped_by_us(instance_id: str) -> bool:
    record = await POWER.get(instance_id)
    return record is not None and record.stopped_by_imsflow


async def _record_power(instance_id: str, stopped_by_imsflow: bool, *, start_sent: bool = False) -> None:
    record = PowerRecord(
        instance_id=instance_id,
        stopped_by_imsflow=stopped_by_imsflow,
        start_sent=start_sent,
        at=datetime.now(UTC),
    )
    await POWER.put(instance_id, record)


async def _power_job_failed(client: CloudClient, job_id: str, what: str, server: Server) -> None:
    """Raise when the stop/start job ended in FAIL (ECS refuses, e.g., while an image is being made).

    Asked only while the server shows no sign of the operation, so a normal wait costs no extra call, and a
    refused operation ends at once with the cloud's reason instead of at the wait's timeout. A transient
    error here is the wait's to absorb (``imsflow.polling.wait_until``), like one of the server's look.
    """
    job = await client.ecs.get_job(job_id)
    if job.status == "FAIL":
        request_id = f" [request id {job.request_id}]" if job.request_id else ""
        raise EcsNotReadyError(
            f"the {what} of ECS {server.name} ({server.id}) failed: "
            f"{job.error_code or 'no error code'}: {job.fail_reason or 'no reason given'}{request_id}"
        )


#: What to do about a running ECS, in the words of each front end: the deployment's form and the CLI.
STOP_IF_RUNNING_HINT = (
    "Stop the ECS first, or run again with 'Stop if running' ticked (the run's form) / --stop-if-running "
    "(imsflow create): imsflow then stops it and starts it again afterwards."
)


class EcsCheck(BaseModel):
    """What the stopped check found, and whether we stopped the ECS ourselves."""

    instance_id: str
    name: str
    status: str
    stopped_by_us: bool = False
    #: The request's image was made already, so the ECS was left as it was found (never stopped).
    image_made: bool = False


def describe(server: Server) -> str:
    task_state = server.task_state or "no task"
    return f"ECS {server.name} ({server.id}) is {server.status} ({task_state})"


@task(
    name="check-ecs-stopped",
    task_run_name="check-ecs-stopped[{instance_id}]",
    **transient_retries(),
)
async def check_ecs_stopped(
    instance_id: str,
    token: IamToken | None,
    stop_if_running: bool = False,
    stop_timeout: float = 600,
    request_key: str | None = None,
    set_volumes: list[str] | None = None,
) -> EcsCheck:
    """Pass when the ECS is SHUTOFF with no task in progress; stop it (SOFT) first if asked to.

    With ``request_key``, an ECS that is not stopped is neither stopped nor refused when that request's image
    is made already (``EcsCheck.image_made``): a re-run after the image (say, one whose start of the ECS was
    sent before a crash) must not power-cycle the server again. It still owes a start when imsflow stopped it
    (``stopped_by_us``, as for a stopped ECS): ``start-ecs`` then waits for the start under way, or sends it.
    ``set_volumes`` are the data disks of the request's image set (``system-and-data``): the set is made only
    when every member is (``tasks.image.made_image``).
    """
    async with client_for(token) as client:
        server = await client.ecs.get_server(instance_id)
        await name_after_server(instance_id, server.name)
        if server.is_stopped:
            # Stopped by an earlier attempt of ours (a retry, or a run that crashed): it still owes a start.
            ours = stop_if_running and await _stopped_by_us(instance_id)
            runtime.report(
                "check-ecs-stopped", f"{server.name} is stopped" + (" (by imsflow)" if ours else "")
            )
            return EcsCheck(
                instance_id=instance_id, name=server.name, status=server.status, stopped_by_us=ours
            )
        made = await made_image(client, request_key, set_volumes or ()) if request_key is not None else None
        if made is not None:
            ours = stop_if_running and await _stopped_by_us(instance_id)
            runtime.report(
                "check-ecs-stopped",
                f"{server.name} is {server.status}; left as it is: its image {made.image_id or '-'} "
                "is made already",
            )
            return EcsCheck(
                instance_id=instance_id,
                name=server.name,
                status=server.status,
                stopped_by_us=ours,
                image_made=True,
            )
        if not stop_if_running:
            raise EcsNotReadyError(
                f"{describe(server)}; an image can only be made from a stopped ECS",
                hint=STOP_IF_RUNNING_HINT,
            )
        stopping = server.status == "ACTIVE" and server.task_state in (None, "powering-off")
        if not stopping:
            raise EcsNotReadyError(f"{describe(server)}; it can be neither imaged nor stopped now")
        if server.task_state is None:
            # Recorded before the call: an answer lost on the way back may still have stopped it.
            await _record_power(instance_id, stopped_by_imsflow=True)
            try:
                stop_job: str | None = await client.ecs.stop_servers([instance_id], type="SOFT")
            except ImsflowError as exc:
                if not exc.retryable:  # certainly not stopped: nothing owed
                    await _record_power(instance_id, stopped_by_imsflow=False)
                raise
        else:
            stop_job = None  # already powering off: someone else's job
        runtime.report("check-ecs-stopped", f"stopping {server.name} ...")

        async def is_stopped() -> bool:
            nonlocal server
            server = await client.ecs.get_server(instance_id)
            if server.is_stopped:
                return True
            if stop_job is not None and server.is_running:
                try:
                    await _power_job_failed(client, stop_job, "stop", server)
                except EcsNotReadyError:
                    await _record_power(instance_id, stopped_by_imsflow=False)
                    raise
            return False

        try:
            # Transient errors while waiting: absorbed by the wait (bounded), not retried again by the task.
            await runtime.wait_until(is_stopped, timeout=stop_timeout, what=f"ECS {instance_id} to stop")
        except TimeoutError:
            raise EcsNotReadyError(
                f"{describe(server)} {stop_timeout:.0f} s after the stop request",
                hint="check the ECS in the console; a SOFT stop can hang when the guest OS ignores it",
            ) from None
    runtime.report("check-ecs-stopped", f"{server.name} stopped")
    return EcsCheck(instance_id=instance_id, name=server.name, status=server.status, stopped_by_us=True)


@task(
    name="check-ecs-ready",
    task_run_name="check-ecs-ready[{instance_id}]",
    **transient_retries(),
)
async def check_ecs_ready(
    instance_id: str, token: IamToken | None, request_key: str | None = None
) -> EcsCheck:
    """For a full-ECS image: pass when the ECS is running or stopped with no task in progress; never stop it.

    creating_a_full-ecs_image.rst asks, for the ECS form, only for a properly configured ECS (the ECS is
    backed up, then the image made of the backup), not a stopped one; its backup forms add "If an ECS is in
    Stopped state, do not start it". So the ECS is taken as it is: never stopped, never started
    (``stopped_by_us`` stays False, and ``stop_if_running`` does not apply). An ECS powering on or off is
    refused (IMS would refuse it too: "The VM in the current stage cannot be used", IMG.0126), unless the
    request's image is made already (``request_key``; then nothing needs the ECS).
    """
    async with client_for(token) as client:
        server = await client.ecs.get_server(instance_id)
        await name_after_server(instance_id, server.name)
        if server.task_state is None and (server.is_running or server.is_stopped):
            runtime.report(
                "check-ecs-ready", f"{server.name} is {server.status}: a full-ECS image takes it as it is"
            )
            return EcsCheck(instance_id=instance_id, name=server.name, status=server.status)
        made = await made_image(client, request_key) if request_key is not None else None
    if made is not None:
        runtime.report(
            "check-ecs-ready",
            f"{server.name} is {server.status}; its image {made.image_id or '-'} is made already",
        )
        return EcsCheck(instance_id=instance_id, name=server.name, status=server.status, image_made=True)
    raise EcsNotReadyError(
        f"{describe(server)}; a full-ECS image needs an ECS that is running or stopped, with no task in "
        "progress",
        hint="Wait until the ECS is running or stopped (no power operation under way), then run again.",
    )


@task(
    name="start-ecs",
    task_run_name="start-ecs[{instance_id}]",
    **transient_retries(),
)
async def start_ecs(instance_id: str, token: IamToken | None, start_timeout: float = 600) -> str:
    """Start an ECS we stopped, and wait until it is ACTIVE again (a start already under way is waited for,
    an ECS already running only clears the power record)."""
    async with client_for(token) as client:
        server = await client.ecs.get_server(instance_id)
        await name_after_server(instance_id, server.name)
        get_run_logger().info("before the start: %s", describe(server))
        start_job: str | None = None
        if server.status == "SHUTOFF" and server.task_state is None:
            # Recorded before the call: a re-run after a crash then knows the start may be under way.
            await _record_power(instance_id, stopped_by_imsflow=True, start_sent=True)
            try:
                start_job = await client.ecs.start_servers([instance_id])
            except ImsflowError as exc:
                if not exc.retryable:  # certainly not started: still owed, not sent
                    await _record_power(instance_id, stopped_by_imsflow=True)
                raise

        async def is_running() -> bool:
            nonlocal server
            server = await client.ecs.get_server(instance_id)
            if server.is_running:
                return True
            if start_job is not None and server.is_stopped:
                await _power_job_failed(client, start_job, "start", server)
            return False

        try:
            await runtime.wait_until(is_running, timeout=start_timeout, what=f"ECS {instance_id} to start")
        except TimeoutError:
            raise EcsNotReadyError(
                f"{describe(server)} {start_timeout:.0f} s after the start request"
            ) from None
    await _record_power(instance_id, stopped_by_imsflow=False)
    runtime.report("start-ecs", f"{server.name} running again")
    return server.status
