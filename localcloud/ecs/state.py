"""ECS state and rules: servers, their power lifecycle, batch stop/start jobs. No HTTP here (see wire.py).

A server's status is computed from its last power operation and the clock (contract §4.5):
stopping = ACTIVE / active / ``powering-off`` / power 1 for ``stop_seconds``,
then SHUTOFF / stopped / null / 4;
starting = SHUTOFF / stopped / ``powering-on`` / power 4, then ACTIVE / active / null / 1.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from localcloud.clock import Clock
from localcloud.errors import ecs_error, ecs_job_error
from localcloud.faults import JobFault
from localcloud.lifecycle import Lifecycle, Timeline
from localcloud.seed import Durations, Seed, ServerSeed, stable_hex, stable_uuid

PowerKind = Literal["stop", "start"]
Outcome = Literal["SUCCESS", "FAIL"]

POWER_RUNNING = 1
POWER_SHUTDOWN = 4


@dataclass
class PowerOp:
    """A stop or start in flight: RUNNING for the transition, then SUCCESS or FAIL (or stuck forever)."""

    kind: PowerKind
    timeline: Timeline


@dataclass(frozen=True)
class Volume:
    """A disk attached to a server: the system disk (boot index 0) or a data disk.

    The ECS pages show ``os-extended-volumes:volumes_attached`` entries with ``id``, ``device``,
    ``bootIndex`` ("0" for the system disk) and ``delete_on_termination``; the table describing them is not
    among the copied pages. [inference] Data disks: boot index -1 (not bootable), devices ``/dev/vdb``,
    ``/dev/vdc``, ... in slot order.
    """

    id: str
    size_gb: int
    slot: int  # 0: the system disk; 1, 2, ...: data disks in seed order

    @property
    def is_system(self) -> bool:
        return self.slot == 0

    @property
    def boot_index(self) -> int:
        return 0 if self.is_system else -1

    @property
    def device(self) -> str:
        # /dev/vda, /dev/vdb, ... /dev/vdz, then /dev/vdaa ... (26 letters cover any realistic seed).
        n, letters = self.slot, ""
        while True:
            n, r = divmod(n, 26)
            letters = chr(ord("a") + r) + letters
            if n == 0:
                break
            n -= 1
        return "/dev/vd" + letters


@dataclass
class Server:
    id: str
    name: str
    project_id: str
    vm_state: str  # settled state: "active" | "stopped"
    tags: list[str]
    metadata: dict[str, str]
    flavor: str
    image_id: str
    os_version: str
    os_type: str
    platform: str
    system_disk_gb: int
    ip: str
    availability_zone: str
    locked: bool
    created_at: datetime
    settled_at: datetime
    clock: Clock = field(repr=False)
    op: PowerOp | None = None
    volumes: list[Volume] = field(default_factory=list)  # the system disk first, then the data disks

    @property
    def system_volume(self) -> Volume:
        return self.volumes[0]

    @property
    def data_volumes(self) -> list[Volume]:
        return self.volumes[1:]

    # ---- computed from the clock ---------------------------------------------------------------------

    def settle(self) -> None:
        if self.op is None:
            return
        pos = self.op.timeline.at(self.clock.now())
        if pos.name == "RUNNING":
            return
        if pos.name == "SUCCESS":
            self.vm_state = "stopped" if self.op.kind == "stop" else "active"
        self.settled_at = pos.entered_at
        self.op = None

    @property
    def task_state(self) -> str | None:
        self.settle()
        if self.op is None:
            return None
        return "powering-off" if self.op.kind == "stop" else "powering-on"

    @property
    def status(self) -> str:
        self.settle()
        # vm_state active + task in {null, powering-off} -> ACTIVE; stopped + {null, powering-on} -> SHUTOFF.
        return "ACTIVE" if self.vm_state == "active" else "SHUTOFF"

    @property
    def power_state(self) -> int:
        self.settle()
        return POWER_RUNNING if self.vm_state == "active" else POWER_SHUTDOWN

    @property
    def updated_at(self) -> datetime:
        self.settle()
        if self.op is not None:
            return self.op.timeline.started_at
        return self.settled_at

    @property
    def busy(self) -> bool:
        """A power operation is in progress."""
        return self.task_state is not None

    @property
    def reservation_id(self) -> str:
        return "r-" + stable_hex("resv", self.id)[:8]


@dataclass
class SubJob:
    id: str
    job_type: str
    server_id: str
    timeline: Timeline
    error_code: str | None = None
    fail_reason: str | None = None

    def status(self, now: datetime) -> str:
        return self.timeline.status(now)

    def end_time(self, now: datetime) -> datetime | None:
        return self.timeline.end_time(now)


@dataclass
class EcsJob:
    id: str
    project_id: str
    job_type: str
    created_at: datetime
    sub_jobs: list[SubJob]

    def status(self, now: datetime) -> str:
        states = [s.status(now) for s in self.sub_jobs]
        if any(s in ("RUNNING", "INIT") for s in states):
            return "RUNNING"
        if any(s == "FAIL" for s in states):
            return "FAIL"
        return "SUCCESS"


@dataclass(frozen=True)
class ServerFilters:
    """The filters of ``GET /v1/{project_id}/cloudservers/detail`` (None: not filtered)."""

    name: str | None = None  # fuzzy: "." matches any single character except \n and \r
    status: str | None = None
    flavor: str | None = None
    ip: str | None = None  # a substring of the server's address
    reservation_id: str | None = None
    tags: str | None = None  # one tag string the server must carry ("key=value" or a bare key)
    not_tags: str | None = None  # one tag string the server must not carry

    def matcher(self) -> Callable[[Server], bool]:
        name = _fuzzy_name(self.name) if self.name else None

        def matches(s: Server) -> bool:
            return not (
                (name and not name.search(s.name))
                or (self.status and s.status != self.status)
                or (self.flavor and s.flavor != self.flavor)
                or (self.ip and self.ip not in s.ip)
                or (self.reservation_id and self.reservation_id != s.reservation_id)
                or (self.tags is not None and self.tags not in s.tags)
                or (self.not_tags is not None and self.not_tags in s.tags)
            )

        return matches


def _fuzzy_name(pattern: str) -> re.Pattern[str]:
    # The list page: name is fuzzy-matched and "." matches any single character except \n and \r.
    return re.compile("".join(r"[^\n\r]" if ch == "." else re.escape(ch) for ch in pattern))


class ImageJobsByServer:
    """The image job last started from each server: IMS writes it, ECS reads it.

    Shared by both services (built by the cloud, passed to each), so neither holds the other: ECS refuses
    a power operation and IMS a second image while an image is being created from the server.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._timelines: dict[str, Timeline] = {}

    def started(self, server_id: str, timeline: Timeline) -> None:
        self._timelines[server_id] = timeline

    def running(self, server_id: str) -> bool:
        timeline = self._timelines.get(server_id)
        return timeline is not None and timeline.status(self.clock.now()) in ("INIT", "RUNNING")


class Ecs:
    """The elastic cloud server service of the local cloud: one method per API operation."""

    def __init__(
        self,
        seed: Seed,
        clock: Clock,
        project_ids: Callable[[str], str | None],
        *,
        durations: Durations,
        image_jobs: ImageJobsByServer,
    ) -> None:
        self.clock = clock
        self.timing = seed.timing
        self.durations = durations
        self.image_jobs = image_jobs
        self.servers: dict[str, Server] = {}
        # Per-project ids in seed order: listing a project never scans other projects' servers.
        self.by_project: dict[str, list[str]] = {}
        self.jobs: dict[str, EcsJob] = {}
        self.volume_owner: dict[str, str] = {}  # volume id -> the server it is attached to
        now = clock.now()
        for i, s in enumerate(seed.servers):
            project_id = project_ids(s.project)
            assert project_id is not None  # checked by the seed model
            self.add_server(s, project_id, now, i)

    def add_server(self, s: ServerSeed, project_id: str, now: datetime, index: int = 0) -> Server:
        created = s.created_at or now
        server = Server(
            id=s.id,
            name=s.name,
            project_id=project_id,
            vm_state="active" if s.status == "ACTIVE" else "stopped",
            tags=list(s.tags),
            metadata=dict(s.metadata),
            flavor=s.flavor,
            image_id=s.image_id or stable_uuid("image", s.os_version),
            os_version=s.os_version,
            os_type=s.os_type,
            platform=s.platform,
            system_disk_gb=s.system_disk_gb,
            ip=s.ip or f"192.168.{(index // 250) % 250}.{index % 250 + 2}",
            availability_zone=s.availability_zone or "eu-de-01",
            locked=s.locked,
            created_at=created,
            settled_at=created,
            clock=self.clock,
        )
        ids = s.volume_ids()
        server.volumes = [Volume(ids[0], s.system_disk_gb, 0)] + [
            Volume(ids[slot], disk.size, slot) for slot, disk in s.disks()
        ]
        for volume in server.volumes:
            self.volume_owner[volume.id] = server.id
        self.servers[server.id] = server
        self.by_project.setdefault(project_id, []).append(server.id)
        return server

    # ---- queries -------------------------------------------------------------------------------------

    def show_server(self, project_id: str, server_id: str) -> Server:
        """``GET /v1/{project_id}/cloudservers/{server_id}``; also how an action finds its servers."""
        server = self.servers.get(server_id)
        if server is None or server.project_id != project_id:
            raise ecs_error("Ecs.0114", status=404)
        return server

    def find(self, project_id: str, server_id: str) -> Server | None:
        server = self.servers.get(server_id)
        return server if server is not None and server.project_id == project_id else None

    def find_volume(self, project_id: str, volume_id: str) -> tuple[Server, Volume] | None:
        """The server of ``project_id`` a volume is attached to, and the volume (None: not in the project)."""
        server_id = self.volume_owner.get(volume_id)
        server = self.find(project_id, server_id) if server_id is not None else None
        if server is None:
            return None
        return server, next(v for v in server.volumes if v.id == volume_id)

    def list_servers(self, project_id: str, filters: ServerFilters) -> list[Server]:
        """``GET /v1/{project_id}/cloudservers/detail``: every match, in seed order (the wire pages)."""
        matches = filters.matcher()
        return [s for sid in self.by_project.get(project_id, []) if matches(s := self.servers[sid])]

    # ---- actions -------------------------------------------------------------------------------------

    def stop_servers(
        self, project_id: str, server_ids: list[str], *, fault: JobFault | None = None
    ) -> EcsJob:
        """``POST /v1/{project_id}/cloudservers/action`` with ``os-stop``: one sub-job per server."""
        return self._power(project_id, "stop", server_ids, fault or JobFault())

    def start_servers(
        self, project_id: str, server_ids: list[str], *, fault: JobFault | None = None
    ) -> EcsJob:
        """``POST /v1/{project_id}/cloudservers/action`` with ``os-start``: one sub-job per server."""
        return self._power(project_id, "start", server_ids, fault or JobFault())

    def _power(self, project_id: str, kind: PowerKind, ids: list[str], fault: JobFault) -> EcsJob:
        # [inference] unknown ids are refused up front rather than failing inside the job.
        servers = [self.show_server(project_id, sid) for sid in ids]
        now = self.clock.now()
        seconds = self.durations(self.timing.stop_seconds if kind == "stop" else self.timing.start_seconds)
        job = EcsJob(
            id=secrets.token_hex(16),
            project_id=project_id,
            job_type="batchStopServers"
            if kind == "stop"
            else "batchStartServers",  # [inference] undocumented
            created_at=now,
            sub_jobs=[],
        )
        for server in servers:
            job.sub_jobs.append(self._sub_job(server, kind, now, seconds, fault))
        self.jobs[job.id] = job
        return job

    def _sub_job(
        self, server: Server, kind: PowerKind, now: datetime, seconds: float, fault: JobFault
    ) -> SubJob:
        sub_type = "stopServer" if kind == "stop" else "startServer"  # [inference] undocumented
        target = "stopped" if kind == "stop" else "active"

        def ended(outcome: Outcome, code: str | None = None, reason: str | None = None) -> SubJob:
            return SubJob(
                secrets.token_hex(16),
                sub_type,
                server.id,
                Timeline(Lifecycle.of((outcome, None)), now),
                code,
                reason,
            )

        # [inference] The pages do not say what a stop of a stopped ECS does. Ours: nothing to do, the
        # sub-job succeeds at once (idempotent), which is what batch APIs usually do.
        if server.locked:
            return ended("FAIL", "Ecs.0605", "ECS locked.")
        if server.busy or self.image_jobs.running(server.id):
            # [inference] An ECS with a task in progress (powering on/off, or an image being created from
            # it: the UMN says not to stop/start it then) cannot take another power operation.
            return ended(
                "FAIL",
                "Ecs.0100",
                "The ECS status does not meet requirements. Make the ECS in the required status "
                "and try again.",
            )
        if server.vm_state == target:
            return ended("SUCCESS")
        outcome: Outcome = "FAIL" if fault.fail else "SUCCESS"
        lifecycle = Lifecycle.of(("RUNNING", None if fault.stuck else seconds), (outcome, None))
        timeline = Timeline(lifecycle, now)
        server.op = PowerOp(kind, timeline)
        code = (fault.error_code or ("Ecs.0226" if kind == "start" else "Ecs.0100")) if fault.fail else None
        reason = (fault.fail_reason or "injected failure") if fault.fail else None
        return SubJob(secrets.token_hex(16), sub_type, server.id, timeline, code, reason)

    def show_job(self, project_id: str, job_id: str) -> EcsJob:
        """``GET /v1/{project_id}/jobs/{job_id}`` on the ECS endpoint."""
        job = self.jobs.get(job_id)
        if job is None or job.project_id != project_id:
            raise ecs_job_error()
        return job
