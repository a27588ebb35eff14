"""IMS job slots that heal: who holds the fleet's job slots, and freeing the ones a dead run left behind.

The fleet takes one slot of the global concurrency limit ``imsflow-ims-jobs`` per image job in flight
(runtime/budget.py). Prefect keeps the *count* of held slots in its database, but its leases (what frees the
slots of a run that died) live in the server's memory by default and are only expired by a server service
that a temporary server does not run: after a ``kill -9``, a reboot or a server restart the count stays, the
slots are held by nobody, and every later fleet waits for them forever.

So imsflow does not rely on leases. Before it takes slots, a run writes a **claim**: a Prefect variable
``imsflow-slots-<id>`` naming the flow run, the process (host, PID, process start time) and the number of
slots. The claim is refreshed while held (``heartbeat``) and deleted after the slots are given back. Claims
live in the same database as the count, so they survive whatever the count survives.

:func:`reconcile` compares the count with the claims of live holders. A holder is dead when its flow run
ended, when it ran on this host and its process is gone, or when its heartbeat is older than
:data:`STALE_SECONDS` (another host). Slots that no live claim covers are given back, dead claims are
deleted, a dead holder's flow run still shown as running is marked Crashed, and the result says what was
released and why. The fleet reconciles when it starts and while it waits for slots; ``imsflow limits
--reset`` does the same by hand.

Safe against runs acquiring and releasing meanwhile: a claim is written *before* its slots are taken and
deleted *after* they are given back, and the claims are read before and after the count (a change in
between means try again), so a live run's slots are never counted as orphans. Two runs reconciling at once
are serialised by a lock variable (``imsflow-slots-reconcile``); a lock older than a minute is a dead
reconciler's and is taken over.

Prefect's client sends a request again when the connection broke before the answer came (a server restart
mid-request), so every write here may reach the server twice. A claim or the reconcile lock that comes back
as "already exists" is recognised by its ID as this run's own. A slot increment applied twice leaves a slot
held that no claim covers: :class:`JobSlots` reconciles once more when it has given its slots back, so such
a slot is free again when the run ends. (A decrement applied twice frees a slot early; the count is then
below the slots in use until those are given back, which the limit tolerates.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psutil
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

CLAIM_PREFIX = "imsflow-slots-"
LOCK_NAME = "imsflow-slots-reconcile"
#: A held claim's heartbeat, in seconds.
HEARTBEAT_SECONDS = 15.0
#: A claim from another host with no heartbeat for this long is a dead run's.
STALE_SECONDS = 90.0
#: A reconcile lock older than this is a dead reconciler's.
LOCK_STALE_SECONDS = 60.0
#: Flow-run state types (and "GONE": deleted) whose holder holds nothing any more.
_FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED", "GONE"}


class SlotLimitMissing(RuntimeError):
    """The limit does not exist (an acquisition is ``strict``: never an unthrottled run)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _process_started(pid: int) -> float | None:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).create_time()
    return None


class Holder(BaseModel):
    """Who holds something imsflow shares between runs: a flow run in a process on a host, and when it last
    said it lives. What :class:`Claim` (job slots) and ``runtime.exclusive.EcsLock`` (one ECS) have in
    common, and the one place that judges whether such a holder is alive (:meth:`why_dead`)."""

    flow_run_id: str | None = None
    flow_run_name: str | None = None
    host: str
    boot: float  # the host's boot time: a PID from an earlier boot is no process of this one
    pid: int
    started: float | None  # the process's start time: a reused PID is another process
    heartbeat: datetime

    @property
    def variable(self) -> str:
        """The name of the Prefect variable that stores this holder (each kind names its own)."""
        raise NotImplementedError

    @staticmethod
    def here() -> dict[str, Any]:
        """The fields of a holder that is this process, in the current flow run (if any), now."""
        from prefect.runtime import flow_run

        run_id = flow_run.get_id()
        return {
            "flow_run_id": run_id,
            "flow_run_name": flow_run.get_name() if run_id else None,
            "host": socket.gethostname(),
            "boot": psutil.boot_time(),
            "pid": os.getpid(),
            "started": _process_started(os.getpid()),
            "heartbeat": _now(),
        }

    def who(self, detail: str = "") -> str:
        """``flow run 'fleet-env=prod' (pid 4242 on host-a)``, ``detail`` added inside the parentheses."""
        run = f"flow run {self.flow_run_name!r}" if self.flow_run_name else "a process"
        return f"{run} (pid {self.pid} on {self.host}{detail})"

    def why_dead(self, flow_run_state: str | None, now: datetime) -> str | None:
        """Why this holder is dead, or None while it lives.

        ``flow_run_state`` is the type of the holder's flow run as the Prefect API shows it (``"GONE"`` for a
        deleted one), None when the holder has no flow run.
        """
        if flow_run_state in _FINAL_STATES:
            return f"its flow run is {flow_run_state.lower()}"
        if self.host == socket.gethostname() and abs(self.boot - psutil.boot_time()) < 2:
            return None if self._process_lives() else "its process is gone"
        silent = (now - self.heartbeat).total_seconds()
        if silent > STALE_SECONDS:
            return f"no heartbeat for {silent:.0f} s"
        return None

    def _process_lives(self) -> bool:
        """This host's process ``pid`` runs, is no zombie, and started when the holder's did (not a reuse)."""
        try:
            process = psutil.Process(self.pid)
            with process.oneshot():
                same = self.started is None or abs(process.create_time() - self.started) <= 1
                return same and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


class Claim(Holder):
    """Who holds how many slots of a limit: the value of one ``imsflow-slots-<id>`` variable."""

    id: str
    limit: str
    slots: int

    @property
    def variable(self) -> str:
        return CLAIM_PREFIX + self.id

    @classmethod
    def mine(cls, limit: str, slots: int) -> Claim:
        return cls(id=uuid.uuid4().hex, limit=limit, slots=slots, **cls.here())

    def holder(self) -> str:
        """``flow run 'fleet-env=prod' (pid 4242 on host-a, 40 slots)``."""
        return self.who(f", {self.slots} slot{'' if self.slots == 1 else 's'}")


@dataclass
class LimitState:
    """A limit as reconciled: its size, the slots held, and who holds them."""

    name: str
    limit: int
    held: int
    live: list[Claim] = field(default_factory=list)
    released: int = 0
    dead: list[tuple[Claim, str]] = field(default_factory=list)
    #: Another run was reconciling: nothing was checked or released this time.
    skipped: bool = False

    @property
    def unclaimed(self) -> int:
        """Slots held that no live claim covers (released already when ``released`` says so)."""
        return max(0, self.held - sum(c.slots for c in self.live))

    def holders(self) -> str:
        """``flow run 'a' (pid 1 on h, 30 slots), ...`` or ``nobody imsflow knows of``."""
        if not self.live:
            return "nobody imsflow knows of"
        return ", ".join(c.holder() for c in self.live)

    def released_line(self) -> str:
        """What :func:`reconcile` freed, in one line (empty when nothing)."""
        if not self.released:
            return ""
        whose = "; ".join(f"{c.holder()}: {why}" for c, why in self.dead) or "no claim at all"
        return f"released {self.released} slot(s) of {self.name} held by no live run ({whose})"


async def _read_claims(client: PrefectClient, limit: str) -> list[Claim]:
    response = await client.request(
        "POST",
        "/variables/filter",
        json={"variables": {"name": {"like_": f"{CLAIM_PREFIX}%"}}, "limit": 200},
    )
    claims = []
    for item in response.json():
        if item["name"] == LOCK_NAME:
            continue
        try:
            claim = Claim.model_validate(item["value"])
        except ValidationError:
            continue  # not ours (a variable someone named alike): never counted, never deleted
        if claim.limit == limit:
            claims.append(claim)
    return claims


async def flow_run_states(client: PrefectClient, holders: Sequence[Holder]) -> dict[str, str]:
    """The state type of each holder's flow run (``GONE`` for one deleted), by flow run ID, in one call."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = sorted({h.flow_run_id for h in holders if h.flow_run_id})
    if not ids:
        return {}
    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(i) for i in ids]))
    )
    found = {str(r.id): (r.state_type.value if r.state_type else "PENDING") for r in runs}
    return {i: found.get(i, "GONE") for i in ids}


async def _mark_crashed(client: PrefectClient, claim: Claim, why: str) -> None:
    """Show a dead holder's flow run as Crashed in the UI (it would stay Running forever)."""
    from prefect.states import Crashed

    if claim.flow_run_id is None:
        return
    message = f"{why}: imsflow released its {claim.slots} job slot(s) of {claim.limit}"
    with contextlib.suppress(Exception):  # cosmetic: the slots are what matters
        await client.set_flow_run_state(uuid.UUID(claim.flow_run_id), Crashed(message=message), force=True)


@contextlib.asynccontextmanager
async def _reconcile_lock(client: PrefectClient) -> AsyncIterator[bool]:
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    value = {
        "id": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "at": _now().isoformat(),
    }
    for _ in range(2):
        try:
            await client.create_variable(VariableCreate(name=LOCK_NAME, value=value, tags=["imsflow"]))
        except ObjectAlreadyExists:
            held = await client.read_variable_by_name(LOCK_NAME)
            found = held.value if held and isinstance(held.value, dict) else {}
            if found.get("id") != value["id"]:  # else: ours, its answer lost (see the module)
                at = found.get("at")
                age = (_now() - datetime.fromisoformat(at)).total_seconds() if isinstance(at, str) else 1e9
                if age < LOCK_STALE_SECONDS:
                    yield False
                    return
                with contextlib.suppress(ObjectNotFound):
                    await client.delete_variable_by_name(LOCK_NAME)  # a dead reconciler's
                continue
        try:
            yield True
        finally:
            with contextlib.suppress(Exception):
                await client.delete_variable_by_name(LOCK_NAME)
        return
    yield False


async def read_limit(client: PrefectClient, limit: str) -> tuple[int, int]:
    """The limit's size and its held slots."""
    from prefect.exceptions import ObjectNotFound

    try:
        found = await client.read_global_concurrency_limit_by_name(limit)
    except ObjectNotFound:
        raise SlotLimitMissing(f"the concurrency limit {limit} does not exist") from None
    return found.limit, found.active_slots


async def inspect(client: PrefectClient, limit: str) -> LimitState:
    """The limit and who holds it, changing nothing (dead claims are listed in ``dead``)."""
    size, held = await read_limit(client, limit)
    claims = await _read_claims(client, limit)
    states = await flow_run_states(client, claims)
    now = _now()
    state = LimitState(name=limit, limit=size, held=held)
    for claim in claims:
        why = claim.why_dead(states.get(claim.flow_run_id or ""), now)
        if why is None:
            state.live.append(claim)
        else:
            state.dead.append((claim, why))
    return state


async def reconcile(client: PrefectClient, limit: str) -> LimitState:
    """Give back the slots of ``limit`` that no live run holds; say what was done (see the module)."""
    async with _reconcile_lock(client) as locked:
        if not locked:
            size, held = await read_limit(client, limit)
            return LimitState(name=limit, limit=size, held=held, skipped=True)
        for _ in range(3):
            before = {c.id for c in await _read_claims(client, limit)}
            state = await inspect(client, limit)
            if before == {c.id for c, _ in state.dead} | {c.id for c in state.live}:
                break
        else:
            state.skipped = True  # runs came and went throughout: next time
            return state
        for claim, why in state.dead:
            await _mark_crashed(client, claim, why)
            with contextlib.suppress(Exception):
                await client.delete_variable_by_name(claim.variable)
        orphans = state.unclaimed
        if orphans:
            await client.release_concurrency_slots(names=[limit], slots=orphans, occupancy_seconds=1.0)
            state.released = orphans
            state.held -= orphans
        return state


async def keep_alive(client: PrefectClient, holders: Callable[[], Sequence[Holder]]) -> None:
    """Refresh the heartbeat of each holder's variable every :data:`HEARTBEAT_SECONDS`, until cancelled.

    A Prefect server that is restarting is no reason to stop: the next beat will do.
    """
    from prefect.client.schemas.actions import VariableUpdate

    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        for holder in holders():
            holder.heartbeat = _now()
            with contextlib.suppress(Exception):
                await client.update_variable(
                    VariableUpdate(name=holder.variable, value=holder.model_dump(mode="json"))
                )


class JobSlots:
    """This run's slots of ``limit``: taken in groups, each under a claim, all given back at exit.

    Use as ``async with JobSlots(client, limit) as slots``; :meth:`try_take` never waits (the caller decides
    how to wait, and says so); the claims' heartbeat runs in the background while any is held.
    """

    def __init__(self, client: PrefectClient, limit: str) -> None:
        self.client = client
        self.limit = limit
        self.held: dict[str, Claim] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._taken_at: dict[str, float] = {}
        self._took = False  # any slot taken: reconcile at exit
        #: What the reconcile at exit did (None when it did not run).
        self.healed: LimitState | None = None

    async def __aenter__(self) -> JobSlots:
        self._heartbeat = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for claim in list(self.held.values()):
            await self.give_back(claim)
        if self._took:
            # A slot counted twice (an increment sent again after a lost answer) is freed now, not at the
            # next fleet's start: imsflow's limits show what is really in use once this run has ended.
            with contextlib.suppress(Exception):
                self.healed = await reconcile(self.client, self.limit)

    async def try_take(self, slots: int) -> Claim | None:
        """Take ``slots`` slots now, or None when the limit has fewer free."""
        from prefect.client.schemas.actions import VariableCreate
        from prefect.exceptions import ObjectAlreadyExists, PrefectHTTPStatusError

        claim = Claim.mine(self.limit, slots)
        # The claim first: a reconciler that sees the slots taken also sees who took them. Its name is new, so
        # "already exists" means the server made it and the answer was lost (see the module).
        with contextlib.suppress(ObjectAlreadyExists):
            await self.client.create_variable(
                VariableCreate(name=claim.variable, value=claim.model_dump(mode="json"), tags=["imsflow"])
            )
        try:
            response = await self.client.increment_concurrency_slots(
                names=[self.limit], slots=slots, mode="concurrency"
            )
        except PrefectHTTPStatusError as exc:
            await self._forget(claim)
            if exc.response.status_code == 423:  # Locked: not enough free slots
                return None
            raise
        except BaseException:
            await self._forget(claim)
            raise
        if not response.json():
            await self._forget(claim)
            raise SlotLimitMissing(f"the concurrency limit {self.limit} does not exist or is inactive")
        self.held[claim.id] = claim
        self._taken_at[claim.id] = asyncio.get_running_loop().time()
        self._took = True
        return claim

    async def give_back(self, claim: Claim) -> None:
        """Give the claim's slots back, then drop the claim (in that order: see the module)."""
        if self.held.pop(claim.id, None) is None:
            return
        taken = self._taken_at.pop(claim.id, 0.0)
        occupied = max(0.001, asyncio.get_running_loop().time() - taken)
        await self.client.release_concurrency_slots(
            names=[self.limit], slots=claim.slots, occupancy_seconds=occupied
        )
        await self._forget(claim)

    async def _forget(self, claim: Claim) -> None:
        with contextlib.suppress(Exception):
            await self.client.delete_variable_by_name(claim.variable)

    async def _beat(self) -> None:
        await keep_alive(self.client, lambda: list(self.held.values()))


__all__ = [
    "CLAIM_PREFIX",
    "HEARTBEAT_SECONDS",
    "STALE_SECONDS",
    "Claim",
    "Holder",
    "JobSlots",
    "LimitState",
    "SlotLimitMissing",
    "inspect",
    "read_limit",
    "reconcile",
]
