"""What a run tells: an expected failure ends in one line (what failed, the cloud's code and request ID, what
to do) with no traceback in the run's logs; a successful run's logs tell its story (token, server, job,
progress, image, time); run names carry the server's name and the job ID (runtime/failures.py,
runtime/naming.py, ``runtime.report``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, Log, State, TaskRun
from prefect.logging.handlers import APILogHandler

import flows.create_image
from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from flows.lifecycle import PruneResult, _table
from imsflow.errors import EcsNotFoundError, EcsNotReadyError, InvalidCredentialsError, ServerError
from localcloud.seed import FaultRuleSeed
from tasks.image import request_key
from tasks.lifecycle import RetentionDecision
from tests.support import DB_1, WEB_1, CloudNetwork, cloud_runtime, make_cloud

UNKNOWN_ECS = "6f1c2d7e-0000-4000-8000-0000000000ff"


async def _run(params: CreateImageParams, cloud: Any = None, **settings: Any) -> tuple[State[Any], Any]:
    cloud = cloud or make_cloud()
    with cloud_runtime(cloud, **settings):
        state = await create_image_from_ecs(params, return_state=True)
    return state, await state.aresult(raise_on_failure=False)


def _flow_run_id(state: State[Any]) -> UUID:
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return flow_run_id


async def _logs(state: State[Any], *, until: str) -> str:
    """Every log line of the flow run and its task runs, once one contains ``until`` (written in batches)."""
    text = ""
    for _ in range(100):
        await APILogHandler.aflush()
        async with get_client() as client:
            logs: list[Log] = await client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[_flow_run_id(state)]))
            )
        text = "\n".join(log.message for log in logs)
        if until in text:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"no log line with {until!r} in:\n{text}")


async def _flow_run(state: State[Any]) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(_flow_run_id(state))


async def _task_runs(state: State[Any], count: int) -> list[TaskRun]:
    """The flow run's task runs once ``count`` of them are final (the recorder writes them a moment later)."""
    runs: list[TaskRun] = []
    for _ in range(100):
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[_flow_run_id(state)]))
            )
        if len([r for r in runs if r.state is not None and r.state.is_final()]) >= count:
            return runs
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} final task runs: {[r.name for r in runs]}")


async def _ended_cleanly(state: State[Any]) -> str:
    """The flow run's state message, checked: Failed, one line, and no traceback in the run's logs."""
    assert state.is_failed()
    run = await _flow_run(state)
    assert run.state is not None
    assert run.state.is_failed()
    message = run.state.message or ""
    assert message == state.message
    assert "\n" not in message
    logs = await _logs(state, until="Finished in state Failed")
    assert "Traceback" not in logs
    assert "NoneType: None" not in logs
    return message


async def test_a_running_ecs_names_stop_if_running_in_one_line() -> None:
    state, error = await _run(CreateImageParams(instance_id=DB_1, name="db-1-golden"))

    assert isinstance(error, EcsNotReadyError)  # Python callers (and the CLI's unwrap) still get it
    message = await _ended_cleanly(state)
    assert message.startswith("EcsNotReadyError: ECS db-1 (")
    assert "is ACTIVE" in message
    assert " — to do: Stop the ECS first, or run again with 'Stop if running'" in message
    assert "--stop-if-running" in message


async def test_an_unknown_ecs_gives_the_code_the_request_id_and_what_to_check() -> None:
    state, error = await _run(CreateImageParams(instance_id=UNKNOWN_ECS, name="ghost-golden"))

    assert isinstance(error, EcsNotFoundError)
    message = await _ended_cleanly(state)
    assert error.code
    assert error.code in message
    assert error.request_id
    assert f"[request id {error.request_id}]" in message
    assert " — to do: Check the ECS id and that IMSFLOW_REGION / IMSFLOW_PROJECT_ID" in message


async def test_a_wrong_password_names_where_the_credentials_came_from() -> None:
    state, error = await _run(CreateImageParams(instance_id=WEB_1, name="web-1-golden"), password="nope-1")

    assert isinstance(error, InvalidCredentialsError)
    message = await _ended_cleanly(state)
    assert "IAM.0062" in message
    assert error.request_id
    assert f"[request id {error.request_id}]" in message
    assert "IMSFLOW_USERNAME/IMSFLOW_PASSWORD from the environment / .env" in message
    # What to do, once: the refusal says it already (runtime/auth.py), so no " — to do:" repeats it.
    assert message.count("fix IMSFLOW_PASSWORD (or IMSFLOW_USERNAME / IMSFLOW_DOMAIN)") == 1
    assert " — to do: " not in message
    assert "nope-1" not in message


async def test_a_transient_error_still_retried_then_ends_in_one_line() -> None:
    # Every image submission answers 503: get retried by the task (5 calls), then the run ends cleanly.
    cloud = make_cloud()
    cloud.faults.add(
        FaultRuleSeed.model_validate({"kind": "server_error", "operation": "ims.create_image", "status": 503})
    )
    with cloud_runtime(cloud, CloudNetwork(cloud), retry_backoff=0.01):
        state = await create_image_from_ecs(
            CreateImageParams(instance_id=WEB_1, name="web-1-5xx"), return_state=True
        )
    assert isinstance(await state.aresult(raise_on_failure=False), ServerError)
    assert cloud.stats()["ims.create_image"] == 5
    message = await _ended_cleanly(state)
    assert message.startswith("ServerError: HTTP 503")
    assert message.endswith(" — to do: The cloud had an internal problem; retry later.")
    logs = await _logs(state, until="Retries are exhausted")
    assert "Traceback" not in logs


async def test_an_unexpected_exception_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug, not a cloud error")

    monkeypatch.setattr(flows.create_image, "image_one_ecs", broken)
    state, error = await _run(CreateImageParams(instance_id=WEB_1, name="web-1-bug"))

    assert isinstance(error, KeyError)
    assert state.is_failed()
    logs = await _logs(state, until="Traceback")
    assert "KeyError" in logs


async def test_a_successful_run_tells_its_story_and_carries_names() -> None:
    cloud = make_cloud()
    state, result = await _run(CreateImageParams(instance_id=WEB_1, name="web-1-story"), cloud)

    assert isinstance(result, CreateImageResult)
    assert result.job_id is not None
    logs = await _logs(state, until=f"image {result.image_id} (web-1-story) of ECS web-1 is active")
    for line in (
        "token for alice@demo/eu-de, valid until ",  # get-token: scope and expiry
        "web-1 is stopped",  # check-ecs-stopped: the server's state
        f"submitted job {result.job_id}",  # submit-image: the job ID
        "% after ",  # poll-job: progress
        f"image {result.image_id} is active",  # poll-job: the image ID
        "s: get-token ",  # the flow: time, per step
    ):
        assert line in logs, line
    assert "Traceback" not in logs

    runs = await _task_runs(state, count=4)
    names = {run.name for run in runs}
    assert f"poll-job[{result.job_id}]" in names
    assert "check-ecs-stopped[web-1]" in names
    key = request_key(WEB_1, "web-1-story")
    assert not any(key in name for name in names), names  # the request key looks like a job ID: not shown
    flow_run = await _flow_run(state)
    assert flow_run.name == "create-image-web-1-web-1-story"
    assert WEB_1 not in flow_run.name


async def test_a_cached_token_still_says_its_expiry() -> None:
    cloud = make_cloud()
    params = CreateImageParams(instance_id=WEB_1, name="web-1-again")
    await _run(params, cloud)
    state, result = await _run(params, cloud)

    assert isinstance(result, CreateImageResult)
    assert cloud.stats()["iam.create_token"] == 1
    logs = await _logs(state, until="cached token for alice@demo/eu-de, valid until ")
    assert "Traceback" not in logs


def test_the_retention_table_leads_with_action_and_reason() -> None:
    decision = RetentionDecision(
        image_id="1a2b3c4d-0000-4000-8000-000000000001",
        name="web-1-old",
        instance_id=WEB_1,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        status="active",
        action="delete",
        reason="older than the 7 newest",
    )
    rows = _table(PruneResult(dry_run=True, kept=[], deleted=[decision]))
    assert list(rows[0])[:3] == ["action", "why", "image"]
    assert rows[0]["action"] == "would delete"
    assert list(rows[0])[-2:] == ["image ID", "ECS"]
