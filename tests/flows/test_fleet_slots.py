"""Job slots that heal: slots a dead run left are freed, a live holder bounds the wait, nothing else is freed.

The slots are the real thing: the Prefect test server's ``imsflow-ims-jobs`` limit and claim variables,
set up here the way a crashed or a live run leaves them (runtime/slots.py explains claims). The fleet runs on
the in-process local cloud's virtual clock, so a 3-minute wait takes well under a second of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.objects import State, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Completed, Running
from typer.testing import CliRunner

import runtime
from cli.main import app
from flows.fleet import create_images_for_fleet
from localcloud import LocalCloud
from runtime.budget import JOBS_LIMIT, ensure_limits
from runtime.slots import CLAIM_PREFIX, LOCK_NAME, Claim, inspect, reconcile
from tests.flows.test_fleet import fleet_cloud, params, run
from tests.support import cloud_runtime, delete_prefect_variables, holder_fields, prefect_answer_lost

#: Many flow runs per test: the full run (CI), not the quick loop.
pytestmark = pytest.mark.slow


async def _forget_limit() -> None:
    async with get_client() as client:
        with contextlib.suppress(ObjectNotFound):
            await client.delete_global_concurrency_limit_by_name(JOBS_LIMIT)
    await delete_prefect_variables(CLAIM_PREFIX)


@pytest.fixture(autouse=True)
async def fresh_limit() -> AsyncIterator[None]:
    """No job limit and no claims before each test, and none left after (the session shares the server)."""
    await _forget_limit()
    yield
    await _forget_limit()


async def set_limit(size: int) -> None:
    await ensure_limits(max_concurrent_jobs=size, requests_per_second=10_000)


async def hold(
    slots: int,
    *,
    alive: bool = True,
    host: str | None = None,
    heartbeat_age: float = 0.0,
    flow_run_id: uuid.UUID | None = None,
    name: str = "fleet-earlier",
) -> Claim:
    """Take ``slots`` slots as another run does: its claim first, then the slots."""
    claim = Claim(
        id=uuid.uuid4().hex,
        limit=JOBS_LIMIT,
        slots=slots,
        flow_run_id=str(flow_run_id) if flow_run_id else None,
        flow_run_name=name,
        **holder_fields(alive=alive, host=host, heartbeat_age=heartbeat_age),
    )
    async with get_client() as client:
        await client.create_variable(VariableCreate(name=claim.variable, value=claim.model_dump(mode="json")))
        await client.increment_concurrency_slots(names=[JOBS_LIMIT], slots=slots, mode="concurrency")
    return claim


async def orphan(slots: int) -> None:
    """Slots held with no claim at all (what a Prefect lease that vanished with its server leaves)."""
    async with get_client() as client:
        await client.increment_concurrency_slots(names=[JOBS_LIMIT], slots=slots, mode="concurrency")


@flow(name="create-images-for-fleet")
def _a_fleet() -> None:
    """Stands for an earlier fleet's flow run record (never run here)."""


async def flow_run_in(state: str) -> uuid.UUID:
    async with get_client() as client:
        made = await client.create_flow_run(
            _a_fleet, name="fleet-env=prod", state=Running() if state == "RUNNING" else Completed()
        )
    return made.id


async def test_slots_of_runs_that_are_gone_are_freed_when_the_next_fleet_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await set_limit(4)
    killed_run = await flow_run_in("RUNNING")  # a kill -9 leaves its flow run Running forever
    await hold(3, alive=False, flow_run_id=killed_run, name="fleet-env=prod")
    await orphan(1)  # and one slot nobody claims

    p = params(name_contains="node", max_concurrent=4, slot_wait_minutes=1)
    state, result = await run(fleet_cloud(3), p)

    assert state.is_completed(), state.message
    assert [r.outcome for r in result.rows] == ["submitted"] * 3
    assert "released 4 slot(s) of imsflow-ims-jobs held by no live run" in caplog.text
    assert "flow run 'fleet-env=prod'" in caplog.text
    assert "its process is gone" in caplog.text
    async with get_client() as client:
        after = await inspect(client, JOBS_LIMIT)
        crashed = await client.read_flow_run(killed_run)
    assert (after.held, after.live, after.dead) == (0, [], [])
    assert crashed.state is not None
    assert crashed.state.type == StateType.CRASHED
    assert "imsflow released its 3 job slot(s)" in (crashed.state.message or "")


async def test_a_live_holder_makes_the_fleet_fail_within_the_bound_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await set_limit(2)
    live = await hold(2, alive=True, name="fleet-nightly")  # this very process: alive
    cloud = fleet_cloud(3)

    state = await _run_expecting_failure(cloud, slot_wait_minutes=3)

    message = state.message or ""
    assert "SlotsUnavailableError: no IMS job slot came free in 180 s" in message
    holder = f"flow run 'fleet-nightly' (pid {os.getpid()} on {socket.gethostname()}, 2 slots)"
    assert f"imsflow-ims-jobs has 2 of 2 slots held by {holder}" in message
    assert "`imsflow limits --reset` frees those of runs gone" in message
    assert "waiting for an IMS job slot (0 of 180 s)" in caplog.text
    assert cloud.stats().get("ims.create_image", 0) == 0
    async with get_client() as client:
        after = await inspect(client, JOBS_LIMIT)
    assert after.held == 2, "a live run's slots are never freed"
    assert [c.id for c in after.live] == [live.id]


async def _run_expecting_failure(cloud: LocalCloud, **values: Any) -> State[Any]:
    p = params(name_contains="node", max_concurrent=2, **values)
    with cloud_runtime(cloud):
        state = await create_images_for_fleet(p, return_state=True)
    assert state.is_failed()
    return state


async def test_a_waiting_fleet_goes_on_once_the_holder_gives_its_slots_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await set_limit(2)
    holder = await hold(2, alive=True, name="fleet-before")
    waiting = asyncio.Event()

    def on_report(step: str, message: str) -> None:
        if step == "fleet:waiting":
            waiting.set()

    cloud = fleet_cloud(3)
    p = params(name_contains="node", max_concurrent=2, slot_wait_minutes=30)
    with cloud_runtime(cloud), runtime.use_runtime(reporters=(on_report,)):

        async def fleet_run() -> State[Any]:
            return await create_images_for_fleet(p, return_state=True)

        fleet = asyncio.create_task(fleet_run())
        await asyncio.wait_for(waiting.wait(), timeout=120)
        assert cloud.stats().get("ims.create_image", 0) == 0
        async with get_client() as client:  # the holder ends: its slots back, then its claim
            await client.release_concurrency_slots(names=[JOBS_LIMIT], slots=2, occupancy_seconds=1.0)
            await client.delete_variable_by_name(holder.variable)
        state = await fleet

    assert state.is_completed(), state.message
    assert cloud.stats()["ims.create_image"] == 3
    assert re.search(r"got [12] job slot\(s\) after waiting", caplog.text)
    assert "released" not in caplog.text, "nothing was held by a dead run"


async def test_reconcile_frees_only_what_no_live_run_holds() -> None:
    await set_limit(20)
    mine = await hold(2, alive=True)
    remote = await hold(1, host="worker-7", alive=False, heartbeat_age=10)
    silent = await hold(2, host="worker-8", alive=False, heartbeat_age=300)
    ended = await hold(1, alive=True, flow_run_id=await flow_run_in("COMPLETED"))
    gone = await hold(3, alive=False)
    await orphan(1)

    async with get_client() as client:
        state = await reconcile(client, JOBS_LIMIT)
        after = await inspect(client, JOBS_LIMIT)
        again = await reconcile(client, JOBS_LIMIT)

    assert state.released == 2 + 1 + 3 + 1
    assert {c.id for c in state.live} == {mine.id, remote.id}
    why = {c.id: reason for c, reason in state.dead}
    assert why[silent.id].startswith("no heartbeat for 30")
    assert why[ended.id] == "its flow run is completed"
    assert why[gone.id] == "its process is gone"
    assert (after.held, after.dead) == (3, [])
    assert {c.id for c in after.live} == {mine.id, remote.id}
    assert again.released == 0


async def test_one_reconciler_at_a_time_and_a_dead_reconcilers_lock_is_taken_over() -> None:
    await set_limit(4)
    await orphan(2)
    async with get_client() as client:
        lock = {"host": "worker-9", "pid": 1, "at": datetime.now(UTC).isoformat()}
        await client.create_variable(VariableCreate(name=LOCK_NAME, value=lock))
        busy = await reconcile(client, JOBS_LIMIT)
        lock["at"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        await client.update_variable(VariableUpdate(name=LOCK_NAME, value=lock))
        taken_over = await reconcile(client, JOBS_LIMIT)
        left = await client.read_variable_by_name(LOCK_NAME)
    assert (busy.skipped, busy.released, busy.held) == (True, 0, 2)
    assert (taken_over.skipped, taken_over.released, taken_over.held) == (False, 2, 0)
    assert left is None, "the lock is given back"


async def test_imsflow_limits_shows_the_holders_and_reset_frees_the_dead_ones() -> None:
    await set_limit(5)
    await hold(2, alive=True, name="fleet-live")
    await hold(1, alive=False, name="fleet-killed")
    await orphan(1)
    cli = CliRunner()

    shown = await asyncio.to_thread(cli.invoke, app, ["limits"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "imsflow-ims-jobs" in text
    assert "flow run 'fleet-live'" in text
    assert "'fleet-killed'" in text
    assert "its process is gone" in text
    assert "1 held by no run imsflow knows of" in text
    assert "`imsflow limits --reset` frees them" in text

    reset = await asyncio.to_thread(cli.invoke, app, ["limits", "--reset"], catch_exceptions=False)
    assert reset.exit_code == 0, reset.output
    text = " ".join(reset.output.split())
    assert "released 2 slot(s) of imsflow-ims-jobs held by no live run" in text
    async with get_client() as client:
        after = await inspect(client, JOBS_LIMIT)
    assert (after.held, [c.flow_run_name for c in after.live], after.dead) == (2, ["fleet-live"], [])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/variables/", JOBS_LIMIT, id="claim"),  # only a claim's value names the limit
        pytest.param("/v2/concurrency_limits/increment", JOBS_LIMIT, id="increment"),
        pytest.param("/variables/", LOCK_NAME, id="reconcile-lock"),
    ],
)
async def test_an_answer_lost_to_a_server_restart_leaves_no_slot_held(path: str, body: str) -> None:
    """A Prefect server restarting mid-request applies the request but its answer is lost, and Prefect's
    client sends it again: a claim created twice, slots taken twice (the second time refused or counted), the
    reconcile lock found taken by itself. The fleet still completes, and once it has ended no slot is held:
    not the slot a dead run left before it (freed by the reconcile, which this run must not skip), nor one the
    repeated increment took."""
    await set_limit(4)
    await orphan(1)
    # Two ECSs, so two slots taken at once, counted twice, fit the limit of 4 (more would be refused).
    p = params(name_contains="node", max_concurrent=4, slot_wait_minutes=1)
    with prefect_answer_lost("POST", path, body) as sent_twice:
        state, result = await run(fleet_cloud(2), p)
    assert len(sent_twice) == 1, "the request reached the server twice"
    assert state.is_completed(), state.message
    assert [r.outcome for r in result.rows] == ["submitted"] * 2
    async with get_client() as client:
        after = await inspect(client, JOBS_LIMIT)
        lock = await client.read_variable_by_name(LOCK_NAME)
    assert (after.held, after.live, after.dead) == (0, [], [])
    assert lock is None, "the reconcile lock is given back"
