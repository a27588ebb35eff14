"""One run at a time per ECS: the lock every imaging of an ECS takes (``flows.pipeline.image_one_ecs``).

Two imagings of the same ECS at once would fight over its power state and its IMS job (IMS refuses a second
job on a server that has one); imagings of different ECSs are independent. So the lock is per ECS, not per
deployment: any number of ``create-image`` runs and fleets go side by side, and two that reach the same ECS
take turns, whichever flow, process or machine they run in, as long as they share one Prefect server.

The lock is a Prefect variable ``imsflow-ecs-<instance id>`` whose value names the holder (an
:class:`EcsLock`: flow run, host, PID, process start time, heartbeat, as a job-slot claim does). Creating
it is atomic (the server refuses a second variable of that name: ``ObjectAlreadyExists``), so exactly one
run holds it. It is refreshed every :data:`~runtime.slots.HEARTBEAT_SECONDS` while held and deleted when the
imaging ends, however it ends. Cost per ECS: one create, one read and one delete (plus a heartbeat per 15 s
held); a run that waits reads the lock and its holder's flow run every :data:`POLL_SECONDS`.

**A second run for a held ECS waits**, saying in its log which run holds the ECS (at once, and every
:data:`SAY_SECONDS`), and goes on as soon as the lock is free; after ``wait`` seconds (the pipeline passes
its image-job timeout) it gives up with :class:`EcsHeldError`, one line naming the holder. ``wait=0``
refuses at once instead.

**A dead holder does not block.** Whether the holder lives is judged by the job slots' rules
(:meth:`runtime.slots.Holder.why_dead`: its flow run ended or was deleted; on this host its process is gone;
on another host no heartbeat for :data:`~runtime.slots.STALE_SECONDS`), and a lock left by an earlier
attempt of the same flow run is that attempt's, which is over. A dead holder's lock is taken over: the run
that first creates the tombstone ``imsflow-ecs-<instance id>-gone-<lock id>`` (atomic too) deletes that
very lock, if it is still there, and all try again; so two runs finding the same dead lock never delete a
live one. A tombstone names its taker as a lock names its holder, and one whose taker died (killed in the
middle of a takeover: its process is gone) is cleared at once, by the same rules; whatever its taker, it is
stale after :data:`TAKEOVER_STALE_SECONDS` (a takeover takes milliseconds).

**A lost answer is no rival.** Prefect's client sends a request again when the connection broke before the
answer came (a server restart mid-request), so a create the server did make can come back as "already
exists". Each lock and tombstone carries an ID of its own, and one found with this run's ID is this run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

import runtime
from imsflow.errors import EcsNotReadyError
from runtime.slots import Holder, _now, flow_run_states, keep_alive

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

LOCK_PREFIX = "imsflow-ecs-"
#: Seconds between two looks at a held lock.
POLL_SECONDS = 5.0
#: Seconds between two "waiting for ECS" log lines about the same holder.
SAY_SECONDS = 60.0
#: A takeover's tombstone older than this is a dead taker's.
TAKEOVER_STALE_SECONDS = 60.0

Logger = logging.Logger | logging.LoggerAdapter[Any]


class EcsHeldError(EcsNotReadyError):
    """Another run is imaging the ECS, and did not finish within the wait."""

    hint = "Wait for that run to finish (or cancel it), then run again."


class EcsLock(Holder):
    """Who images an ECS: the value of its ``imsflow-ecs-<instance id>`` variable."""

    id: str
    instance_id: str

    @property
    def variable(self) -> str:
        return lock_name(self.instance_id)

    @classmethod
    def mine(cls, instance_id: str) -> EcsLock:
        return cls(id=uuid.uuid4().hex, instance_id=instance_id.lower(), **cls.here())

    def holder(self) -> str:
        """``flow run 'create-image-…' (pid 4242 on host-a)``."""
        return self.who()


def lock_name(instance_id: str) -> str:
    """The variable that is ECS ``instance_id``'s lock (Prefect variable names are lower case)."""
    return LOCK_PREFIX + instance_id.lower()


class _Tombstone(Holder):
    """A takeover under way: who is deleting a dead holder's lock (``heartbeat``: since when)."""

    taker: str

    @classmethod
    def mine(cls) -> _Tombstone:
        return cls(taker=uuid.uuid4().hex, **cls.here())

    def why_stale(self) -> str | None:
        """Why no takeover is under way any more (its taker died, or it is too old), or None."""
        if (_now() - self.heartbeat).total_seconds() > TAKEOVER_STALE_SECONDS:
            return "too old"
        # No flow-run lookup: on this host the process decides, elsewhere the age above.
        return self.why_dead(None, _now())


async def _read(client: PrefectClient, name: str) -> tuple[bool, Any]:
    """Whether the variable exists, and its value."""
    variable = await client.read_variable_by_name(name)
    return (variable is not None, variable.value if variable is not None else None)


async def _read_lock(client: PrefectClient, instance_id: str) -> tuple[bool, EcsLock | None]:
    """Whether the lock exists, and its holder (None when it is gone or is no lock imsflow wrote)."""
    exists, value = await _read(client, lock_name(instance_id))
    try:
        return exists, EcsLock.model_validate(value) if exists else None
    except ValidationError:
        return exists, None


async def why_dead(client: PrefectClient, held: EcsLock, mine: EcsLock) -> str | None:
    """Why the lock's holder is dead, or None while it lives (see the module)."""
    if (
        held.flow_run_id is not None
        and held.flow_run_id == mine.flow_run_id
        and (held.host, held.pid, held.started) != (mine.host, mine.pid, mine.started)
    ):
        return "it is an earlier attempt of this flow run"
    states = await flow_run_states(client, [held])
    return held.why_dead(states.get(held.flow_run_id or ""), _now())


async def _ours_or_cleared(client: PrefectClient, tombstone: str, mine: _Tombstone) -> bool:
    """The tombstone exists: True when it is ``mine`` (its create went through, its answer was lost and the
    client sent it again: see :func:`acquire`); otherwise another taker's, deleted if that taker died."""
    from prefect.exceptions import ObjectNotFound

    exists, value = await _read(client, tombstone)
    if not exists:
        return False  # gone meanwhile: try again
    try:
        found = _Tombstone.model_validate(value)
    except ValidationError:
        found = None  # not one this imsflow wrote (an older one's): its name is imsflow's, so it goes
    if found is not None and found.taker == mine.taker:
        return True
    if found is None or found.why_stale() is not None:
        with contextlib.suppress(ObjectNotFound):
            await client.delete_variable_by_name(tombstone)  # a dead taker's
    return False


async def _take_over(client: PrefectClient, held: EcsLock | None, instance_id: str) -> bool:
    """Delete a dead holder's lock, unless another run is doing so; False when one is."""
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = lock_name(instance_id)
    # A lock no one can read (not written by imsflow): its name is imsflow's, so it goes.
    tombstone = f"{name}-gone-{held.id if held else 'unreadable'}"
    mine = _Tombstone.mine()
    try:
        value = mine.model_dump(mode="json")
        await client.create_variable(VariableCreate(name=tombstone, value=value, tags=["imsflow"]))
    except ObjectAlreadyExists:
        if not await _ours_or_cleared(client, tombstone, mine):
            return False
    try:
        _, current = await _read_lock(client, instance_id)
        # Only that very lock: a newer one is a live run's.
        if (current.id if current else None) == (held.id if held else None):
            with contextlib.suppress(ObjectNotFound):
                await client.delete_variable_by_name(name)
    finally:
        with contextlib.suppress(Exception):
            await client.delete_variable_by_name(tombstone)
    return True


async def acquire(client: PrefectClient, instance_id: str, *, wait: float, logger: Logger) -> EcsLock:
    """Take the ECS's lock: now, after a dead holder's is taken over, or once its live holder let it go
    (waiting at most ``wait`` seconds on the runtime's clock, saying for whom).

    Raises :class:`EcsHeldError` when a live holder kept it longer.
    """
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists

    rt = runtime.current()
    mine = EcsLock.mine(instance_id)
    since = rt.clock()
    said: tuple[str, float] | None = None  # (holder's lock id, when)
    while True:
        mine.heartbeat = _now()
        try:
            await client.create_variable(
                VariableCreate(name=mine.variable, value=mine.model_dump(mode="json"), tags=["imsflow"])
            )
        except ObjectAlreadyExists:
            exists, held = await _read_lock(client, instance_id)
        else:
            exists, held = True, mine
        if held is not None and held.id == mine.id:
            # Ours: also when the server made it but its answer was lost (a restart mid-request) and Prefect's
            # client sent the create again, which the server refused as a duplicate. Without this check the
            # run would wait for itself until the job timeout.
            if said is not None:
                logger.info("ECS %s is free after waiting %.0f s", instance_id, rt.clock() - since)
            return mine
        if not exists:
            continue  # let go meanwhile
        why = "it is no lock imsflow wrote" if held is None else await why_dead(client, held, mine)
        if why is not None:
            whose = held.holder() if held else "nobody imsflow knows of"
            if await _take_over(client, held, instance_id):
                logger.warning("took over the lock on ECS %s from %s: %s", instance_id, whose, why)
                continue
            await rt.sleep(1.0)  # another run is taking it over
            continue
        assert held is not None
        now = rt.clock()
        waited = now - since
        if waited >= wait:
            raise EcsHeldError(
                f"ECS {instance_id} is being imaged by {held.holder()}"
                + (f"; gave up after waiting {waited:.0f} s" if wait > 0 else "")
            )
        if said is None or said[0] != held.id or now - said[1] >= SAY_SECONDS:
            logger.info(
                "waiting for ECS %s (%.0f of %.0f s): it is being imaged by %s",
                instance_id,
                waited,
                wait,
                held.holder(),
            )
            said = (held.id, now)
        await rt.sleep(min(POLL_SECONDS, wait - waited))


async def release(client: PrefectClient, lock: EcsLock) -> None:
    """Let the ECS go (only this very lock: one taken over meanwhile is another run's now)."""
    from prefect.exceptions import ObjectNotFound

    _, current = await _read_lock(client, lock.instance_id)
    if current is not None and current.id == lock.id:
        with contextlib.suppress(ObjectNotFound):
            await client.delete_variable_by_name(lock.variable)


@contextlib.asynccontextmanager
async def exclusive_ecs(instance_id: str, *, wait: float, logger: Logger) -> AsyncIterator[EcsLock]:
    """Hold ECS ``instance_id`` for the body: no other run images it meanwhile (see the module)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        lock = await acquire(client, instance_id, wait=wait, logger=logger)
        heartbeat = asyncio.create_task(keep_alive(client, lambda: [lock]))
        try:
            yield lock
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            try:
                await asyncio.shield(release(client, lock))
            except Exception as exc:  # the next run takes it over once this one has ended
                logger.warning("could not let ECS %s go: %s", instance_id, exc)


__all__ = [
    "LOCK_PREFIX",
    "POLL_SECONDS",
    "SAY_SECONDS",
    "EcsHeldError",
    "EcsLock",
    "acquire",
    "exclusive_ecs",
    "lock_name",
    "release",
    "why_dead",
]
