"""Step 2: make sure the ECS is stopped (and stop it when asked to); start it again afterwards."""

from __future__ import annotations

from prefect import task
from pydantic import BaseModel

from imsflow.errors import EcsNotReadyError
from imsflow.models import IamToken, Server
from imsflow.polling import wait_until
from tasks import runtime
from tasks.auth import client_for
from tasks.retry import BACKOFF, JITTER, RETRIES, retry_if_transient


class EcsCheck(BaseModel):
    """What the stopped check found, and whether we stopped the ECS ourselves."""

    instance_id: str
    name: str
    status: str
    stopped_by_us: bool = False


def describe(server: Server) -> str:
    task_state = server.task_state or "no task"
    return f"ECS {server.name} ({server.id}) is {server.status} ({task_state})"


@task(
    name="check-ecs-stopped",
    task_run_name="check-ecs-stopped[{instance_id}]",
    retries=RETRIES,
    retry_delay_seconds=BACKOFF(RETRIES),
    retry_jitter_factor=JITTER,
    retry_condition_fn=retry_if_transient,
)
async def check_ecs_stopped(
    instance_id: str,
    token: IamToken | None,
    stop_if_running: bool = False,
    stop_timeout: float = 600,
) -> EcsCheck:
    """Pass when the ECS is SHUTOFF with no task in progress; stop it (SOFT) first if asked to."""
    rt = runtime.current()
    async with client_for(token) as client:
        server = await client.ecs.get_server(instance_id)
        if server.is_stopped:
            runtime.report("check-ecs-stopped", f"{server.name} is stopped")
            return EcsCheck(instance_id=instance_id, name=server.name, status=server.status)
        if not stop_if_running:
            raise EcsNotReadyError(
                f"{describe(server)}; an image can only be made from a stopped ECS",
                hint="stop it first, or run again with stop_if_running (--stop-if-running)",
            )
        stopping = server.status == "ACTIVE" and server.task_state in (None, "powering-off")
        if not stopping:
            raise EcsNotReadyError(f"{describe(server)}; it can be neither imaged nor stopped now")
        if server.task_state is None:
            await client.ecs.stop_servers([instance_id], type="SOFT")
        runtime.report("check-ecs-stopped", f"stopping {server.name} ...")

        async def is_stopped() -> bool:
            nonlocal server
            server = await client.ecs.get_server(instance_id)
            return server.is_stopped

        try:
            await wait_until(
                is_stopped,
                timeout=stop_timeout,
                interval=2.0,
                clock=rt.clock,
                sleep=rt.sleep,
            )
        except TimeoutError:
            raise EcsNotReadyError(
                f"{describe(server)} {stop_timeout:.0f} s after the stop request",
                hint="check the ECS in the console; a SOFT stop can hang when the guest OS ignores it",
            ) from None
    runtime.report("check-ecs-stopped", f"{server.name} stopped")
    return EcsCheck(instance_id=instance_id, name=server.name, status=server.status, stopped_by_us=True)


@task(
    name="start-ecs",
    task_run_name="start-ecs[{instance_id}]",
    retries=RETRIES,
    retry_delay_seconds=BACKOFF(RETRIES),
    retry_jitter_factor=JITTER,
    retry_condition_fn=retry_if_transient,
)
async def start_ecs(instance_id: str, token: IamToken | None, start_timeout: float = 600) -> str:
    """Start an ECS we stopped, and wait until it is ACTIVE again."""
    rt = runtime.current()
    async with client_for(token) as client:
        server = await client.ecs.get_server(instance_id)
        if server.status == "SHUTOFF" and server.task_state is None:
            await client.ecs.start_servers([instance_id])

        async def is_running() -> bool:
            nonlocal server
            server = await client.ecs.get_server(instance_id)
            return server.status == "ACTIVE" and server.task_state is None

        try:
            await wait_until(is_running, timeout=start_timeout, interval=2.0, clock=rt.clock, sleep=rt.sleep)
        except TimeoutError:
            raise EcsNotReadyError(
                f"{describe(server)} {start_timeout:.0f} s after the start request"
            ) from None
    runtime.report("start-ecs", f"{server.name} running again")
    return server.status
