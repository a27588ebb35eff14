"""One run at a time per ECS, not per deployment (runtime/exclusive.py): the locks are real Prefect variables
on the test server, the runs real create-image flow runs on the in-process local cloud's virtual clock.

A run is held inside the cloud at its image submission (:class:`Gate`) for as long as a test needs it to
hold its ECS: no test sleeps, and a run that waits for an ECS advances the virtual clock as it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate
from prefect.states import Completed, Running

import runtime
from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from localcloud import LocalCloud
from runtime.exclusive import LOCK_PREFIX, EcsHeldError, EcsLock, _Tombstone, acquire, lock_name, release
from runtime.slots import STALE_SECONDS
from tests.flows.test_fleet import ecs_id, fleet_cloud, params, run
from tests.support import (
    DB_1,
    WEB_1,
    CloudNetwork,
    cloud_runtime,
    delete_prefect_variables,
    holder_fields,
    make_cloud,
    prefect_answer_lost,
)

#: Many flow runs per test: the full run (CI), not the quick loop.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
async def no_locks() -> AsyncIterator[None]:
    """No ECS lock before each test, and none left after (the session shares the server)."""
    await delete_prefect_variables(LOCK_PREFIX)
    yield
    await delete_prefect_variables(LOCK_PREFIX)


async def _locks() -> list[str]:
    async with get_client() as client:
        return [v.name for v in await client.read_variables() if v.name.startswith(LOCK_PREFIX)]


class Gate(CloudNetwork):
    """The local cloud, but the first image submission for ``instance_id`` waits until :attr:`opened`."""

    def __init__(self, cloud: LocalCloud, instance_id: str) -> None:
        super().__init__(cloud)
        self.instance_id = instance_id
        self.arrived = asyncio.Event()
        self.opened = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        submits = request.method == "POST" and request.url.path.endswith("/cloudimages/action")
        if submits and self.instance_id in request.content.decode() and not self.arrived.is_set():
            self.arrived.set()
            await self.opened.wait()
        return await super().handle_async_request(request)


async def until(event: asyncio.Event, *runs: asyncio.Task[Any]) -> None:
    """Wait for ``event``; a run that ends first fails the test (with its error)."""
    waiter = asyncio.ensure_future(event.wait())
    done, _ = await asyncio.wait({waiter, *runs}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        ended = next(iter(done))
        raise AssertionError(f"a run ended before the test expected it to: {ended.result()!r}")


@contextlib.contextmanager
def noticing_waits() -> Any:
    """The runtime's sleep, with an event set at its first call (a run waiting for an ECS sleeps; a run held
    at the gate does not)."""
    slept = asyncio.Event()
    virtual: Callable[[float], Awaitable[None]] = runtime.current().sleep

    async def sleep(seconds: float) -> None:
        slept.set()
        await virtual(seconds)

    with runtime.use_runtime(sleep=sleep):
        yield slept


def create(instance_id: str, name: str, **values: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(
        create_image_from_ecs(CreateImageParams(instance_id=instance_id, name=name, **values))
    )


async def test_runs_for_different_ecss_go_side_by_side() -> None:
    cloud = make_cloud()
    gate = Gate(cloud, WEB_1)
    with cloud_runtime(cloud, gate):
        first = create(WEB_1, "web-1-side")
        await until(gate.arrived, first)
        # web-1's run holds web-1 (held at its submission); db-1's run goes all the way meanwhile.
        second = await create_image_from_ecs(
            CreateImageParams(instance_id=DB_1, name="db-1-side", stop_if_running=True)
        )
        assert isinstance(second, CreateImageResult)
        assert not first.done()
        gate.opened.set()
        done = await first
    assert isinstance(done, CreateImageResult)
    assert {i.status for i in cloud.ims.images.values()} == {"active"}
    assert len(cloud.ims.images) == 2
    assert await _locks() == []


async def test_a_second_run_for_the_same_ecs_waits_for_the_first_then_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cloud = make_cloud()
    gate = Gate(cloud, WEB_1)
    with cloud_runtime(cloud, gate), noticing_waits() as slept:
        first = create(WEB_1, "web-1-first")
        await until(gate.arrived, first)
        assert await _locks() == [lock_name(WEB_1)]
        second = create(WEB_1, "web-1-second")
        await until(slept, first, second)  # the second waits: the first holds web-1
        assert cloud.stats().get("ims.create_image", 0) == 0
        gate.opened.set()
        results = await asyncio.gather(first, second)
    assert all(isinstance(r, CreateImageResult) for r in results)
    assert sorted(i.name for i in cloud.ims.images.values()) == ["web-1-first", "web-1-second"]
    assert {i.status for i in cloud.ims.images.values()} == {"active"}
    assert (
        f"waiting for ECS {WEB_1} (0 of 1800 s): it is being imaged by "
        f"flow run 'create-image-{WEB_1}-web-1-first' (pid {os.getpid()} on {socket.gethostname()})"
    ) in caplog.text
    assert f"ECS {WEB_1} is free after waiting" in caplog.text
    assert await _locks() == []


async def test_the_wait_is_bounded_and_names_the_run_holding_the_ecs() -> None:
    cloud = make_cloud()
    gate = Gate(cloud, WEB_1)
    with cloud_runtime(cloud, gate):
        first = create(WEB_1, "web-1-long")
        await until(gate.arrived, first)
        # The wait is the run's job timeout (1 minute of the virtual clock here).
        with pytest.raises(EcsHeldError) as refused:
            await create_image_from_ecs(
                CreateImageParams(instance_id=WEB_1, name="web-1-late", timeout_minutes=1)
            )
        gate.opened.set()
        assert isinstance(await first, CreateImageResult)
    assert str(refused.value) == (
        f"ECS {WEB_1} is being imaged by flow run 'create-image-{WEB_1}-web-1-long' "
        f"(pid {os.getpid()} on {socket.gethostname()}); gave up after waiting 60 s"
    )
    assert [i.name for i in cloud.ims.images.values()] == ["web-1-long"]


@flow(name="create-image-from-ecs")
def _earlier_run() -> None:
    """Stands for an earlier run's flow run record (never run here)."""


async def _flow_run(state: str) -> str:
    async with get_client() as client:
        made = await client.create_flow_run(
            _earlier_run, name="create-image-earlier", state=Running() if state == "RUNNING" else Completed()
        )
    return str(made.id)


async def leave_lock(
    instance_id: str,
    *,
    alive: bool = True,
    host: str | None = None,
    heartbeat_age: float = 0.0,
    flow_run_id: str | None = None,
) -> EcsLock:
    """An ECS lock as another run leaves it: held by a live process, or by one killed with ``kill -9``."""
    lock = EcsLock(
        id=uuid.uuid4().hex,
        instance_id=instance_id,
        flow_run_id=flow_run_id,
        flow_run_name="create-image-earlier" if flow_run_id else None,
        **holder_fields(alive=alive, host=host, heartbeat_age=heartbeat_age),
    )
    async with get_client() as client:
        await client.create_variable(VariableCreate(name=lock.variable, value=lock.model_dump(mode="json")))
    return lock


@pytest.mark.parametrize(
    ("holder", "why"),
    [
        # kill -9 on this host: its flow run still shows Running, its process is gone.
        pytest.param({"alive": False, "running_run": True}, "its process is gone", id="killed-here"),
        # kill -9 or a reboot on another host: no heartbeat since.
        pytest.param(
            {"host": "other-host", "heartbeat_age": STALE_SECONDS + 30, "running_run": True},
            r"no heartbeat for 1[2-9]\d s",  # 120 s and the seconds the test took
            id="silent-elsewhere",
        ),
        # A server restart marked the run ended (or someone did); its process may even live on.
        pytest.param({"host": "other-host", "ended_run": True}, "its flow run is completed", id="run-ended"),
    ],
)
async def test_a_lock_left_by_a_dead_holder_does_not_block(
    holder: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    holder = dict(holder)  # the parameters are shared by the layouts' runs
    run_id = None
    if holder.pop("running_run", False):
        run_id = await _flow_run("RUNNING")
    if holder.pop("ended_run", False):
        run_id = await _flow_run("COMPLETED")
    left = await leave_lock(WEB_1, flow_run_id=run_id, **holder)
    cloud = make_cloud()
    with cloud_runtime(cloud):
        result = await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="web-1-after"))
    assert isinstance(result, CreateImageResult)
    taken = f"took over the lock on ECS {WEB_1} from {re.escape(left.holder())}: {why}"
    assert re.search(taken, caplog.text), caplog.text
    assert "waiting for ECS" not in caplog.text
    assert await _locks() == []


async def test_a_live_holder_on_another_host_blocks_a_fleet_row_not_the_others() -> None:
    """A fleet and an ad-hoc run exclude each other too: the ECS an ad-hoc run (on another machine) holds
    fails its row after the wait; the fleet's other ECSs are imaged."""
    held = await leave_lock(ecs_id(1), host="other-host", flow_run_id=await _flow_run("RUNNING"))
    cloud = fleet_cloud(3)
    # One lane: the wait (3 minutes of the shared virtual clock) must not hurry the other jobs' timeouts.
    ids = [ecs_id(i) for i in range(3)]
    state, result = await run(cloud, params(instance_ids=ids, max_concurrent=1, timeout_minutes=3))
    assert state.is_failed()
    outcomes = {r.instance_id: r.outcome for r in result.rows}
    assert outcomes == {ecs_id(0): "submitted", ecs_id(1): "failed", ecs_id(2): "submitted"}
    row = next(r for r in result.rows if r.instance_id == ecs_id(1))
    assert f"is being imaged by {held.holder()}" in str(row.error)
    assert await _locks() == [lock_name(ecs_id(1))]  # the live holder's, untouched


@pytest.mark.parametrize("lost", ["lock", "tombstone"])
async def test_a_create_whose_answer_was_lost_is_the_runs_own(lost: str) -> None:
    """A Prefect server restarting mid-request makes the lock (or a takeover's tombstone) but its answer is
    lost; Prefect's client sends the create again and the server refuses the duplicate. The run knows its own
    and goes on at once (it used to wait for itself until the job timeout, or a minute for its tombstone)."""
    if lost == "tombstone":
        await leave_lock(WEB_1, alive=False)
    body = "-gone-" if lost == "tombstone" else f'"{lock_name(WEB_1)}"'
    with cloud_runtime(make_cloud()), prefect_answer_lost("POST", "/variables/", body) as sent_twice:
        async with get_client() as client:
            rt = runtime.current()
            started = rt.clock()
            lock = await acquire(client, WEB_1, wait=60, logger=logging.getLogger("test"))
            waited = rt.clock() - started
            held = await client.read_variable_by_name(lock_name(WEB_1))
            await release(client, lock)
    assert len(sent_twice) == 1, "the create reached the server twice"
    assert held is not None
    assert EcsLock.model_validate(held.value).id == lock.id, "the lock is this run's"
    assert waited == 0
    assert await _locks() == []


@pytest.mark.parametrize("taker", ["killed", "older-imsflow"])
async def test_a_takeover_a_killed_run_left_half_done_does_not_block(taker: str) -> None:
    """kill -9 in the middle of a takeover leaves its tombstone beside the dead holder's lock. The next run
    clears it at once, by the lock's own rules (the taker's process is gone), where it used to wait a minute
    for it to go stale (a fleet re-run after kill -9 sat 40 s on two such ECSs); a tombstone this imsflow
    cannot read (an older one's: time and taker only) goes too."""
    left = await leave_lock(WEB_1, alive=False)
    if taker == "killed":
        value = _Tombstone(taker=uuid.uuid4().hex, **holder_fields(alive=False)).model_dump(mode="json")
    else:
        value = {"at": datetime.now(UTC).isoformat(), "taker": uuid.uuid4().hex}
    tombstone = f"{lock_name(WEB_1)}-gone-{left.id}"
    async with get_client() as client:
        await client.create_variable(VariableCreate(name=tombstone, value=value))
    with cloud_runtime(make_cloud()):
        async with get_client() as client:
            rt = runtime.current()
            started = rt.clock()
            lock = await acquire(client, WEB_1, wait=600, logger=logging.getLogger("test"))
            waited = rt.clock() - started
            await release(client, lock)
            assert await client.read_variable_by_name(tombstone) is None
    assert waited <= 1.0, "one look more after clearing it, not a minute"
    assert await _locks() == []
