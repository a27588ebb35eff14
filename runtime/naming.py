"""Run names people can read: the server's name in place of its UUID, once a step has looked it up.

A flow run's name is computed from its parameters before it starts (``flow_run_name``), when only the ECS
ID is known; a task run's name likewise. The first step that reads the server (check-ecs-stopped,
start-ecs, dry-run) calls :func:`name_after_server`: the task run is renamed in place (Prefect records a
task run's name with its next state, so the final state carries the new name), and the flow run, if its
name holds the ECS ID, through the API (``update_flow_run(name=...)``). A fleet's run name holds no ECS
ID: only its task runs are renamed.
"""

from __future__ import annotations

import logging

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext

logger = logging.getLogger(__name__)


def _renamed(name: str, instance_id: str, server_name: str) -> str | None:
    if not server_name or instance_id not in name or server_name == instance_id:
        return None
    return name.replace(instance_id, server_name)


def name_task_run(name: str) -> None:
    """Rename the current task run (no-op outside one); recorded with its next state."""
    context = TaskRunContext.get()
    if context is not None and context.task_run is not None:
        context.task_run.name = name


async def name_after_server(instance_id: str, server_name: str) -> None:
    """Replace ``instance_id`` by ``server_name`` in the current task run's and flow run's names."""
    task_context = TaskRunContext.get()
    if task_context is not None and task_context.task_run is not None:
        new = _renamed(task_context.task_run.name, instance_id, server_name)
        if new is not None:
            task_context.task_run.name = new
    flow_context = FlowRunContext.get()
    if flow_context is None or flow_context.flow_run is None:
        return
    flow_run = flow_context.flow_run
    new = _renamed(flow_run.name, instance_id, server_name)
    if new is None:
        return
    try:
        async with get_client() as client:
            await client.update_flow_run(flow_run.id, name=new)
    except Exception as exc:  # a name is not worth failing a run for
        logger.warning("could not rename flow run %s to %s: %s", flow_run.name, new, exc)
        return
    flow_run.name = new


__all__ = ["name_after_server", "name_task_run"]
