"""ECS state and rules: servers, their power lifecycle, batch stop/start jobs. No HTTP here.

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
from typing import Any, Literal

from localcloud.clock import Clock, fmt_millis, fmt_seconds
from localcloud.errors import CloudError, ecs_error
from localcloud.lifecycle import Lifecycle, Timeline
from localcloud.seed import Seed, ServerSeed, stable_hex, stable_uuid

PowerKind = Literal["stop", "start"]
Outcome = Literal["SUCCESS", "FAIL"]

POWER_RUNNING = 1
POWER_SHUTDOWN = 4

FLAVORS: dict[str, dict[str, str]] = {
    # [inference] a few common flavors so the server body carries plausible numbers.
    "s3.large.2": {"vcpus": "2", "ram": "4096"},
    "s3.xlarge.2": {"vcpus": "4", "ram": "8192"},
    "s3.large.1": {"vcpus": "2", "ram": "2048"},
    "s3.medium.2": {"vcpus": "1", "ram": "2048"},
}


@dataclass
class JobFault:
    """How a fault rule bends a job that is about to be created."""

    fail: bool = False
    stuck: bool = False
    error_code: str | None = None
    fail_reason: str | None = None


@dataclass
class PowerOp:
    """A stop or start in flight: RUNNING for the transition, then SUCCESS or FAIL (or stuck forever)."""

    kind: PowerKind
    timeline: Timeline


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

    # ---- computed from the clock ---------------------------------------------------------------------

    def _settle(self) -> None:
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
        self._settle()
        if self.op is None:
            return None
        return "powering-off" if self.op.kind == "stop" else "powering-on"

    @property
    def status(self) -> str:
        self._settle()
        # vm_state active + task in {null, powering-off} -> ACTIVE; stopped + {null, powering-on} -> SHUTOFF.
        return "ACTIVE" if self.vm_state == "active" else "SHUTOFF"

    @property
    def power_state(self) -> int:
        self._settle()
        return POWER_RUNNING if self.vm_state == "active" else POWER_SHUTDOWN

    @property
    def updated_at(self) -> datetime:
        self._settle()
        if self.op is not None:
            return self.op.timeline.started_at
        return self.settled_at

    @property
    def busy(self) -> bool:
        """A power operation is in progress."""
        return self.task_state is not None


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


# listing_details_about_ecss.rst, query table.
LIST_QUERY_KEYS = frozenset(
    {"offset", "flavor", "name", "status", "limit", "tags", "not-tags", "reservation_id", "ip"}
)
# The same page, row "status": the value range.
LIST_STATUSES = frozenset(
    {
        "ACTIVE",
        "BUILD",
        "ERROR",
        "HARD_REBOOT",
        "MIGRATING",
        "REBOOT",
        "REBUILD",
        "RESIZE",
        "REVERT_RESIZE",
        "SHUTOFF",
        "VERIFY_RESIZE",
        "DELETED",
        "SHELVED",
        "SHELVED_OFFLOADED",
        "UNKNOWN",
    }
)


def _fuzzy_name(pattern: str) -> re.Pattern[str]:
    # The list page: name is fuzzy-matched and "." matches any single character except \n and \r.
    return re.compile("".join(r"[^\n\r]" if ch == "." else re.escape(ch) for ch in pattern))


def _reservation_id(server_id: str) -> str:
    return "r-" + stable_hex("resv", server_id)[:8]


class Ecs:
    """The elastic cloud server service of the local cloud."""

    def __init__(self, seed: Seed, clock: Clock, project_ids: Callable[[str], str | None]) -> None:
        self.clock = clock
        self.timing = seed.timing
        self.servers: dict[str, Server] = {}
        # Per-project ids in seed order: listing a project never scans other projects' servers.
        self.by_project: dict[str, list[str]] = {}
        self.jobs: dict[str, EcsJob] = {}
        # Set by the cloud: does IMS have an image job running for this server?
        self.image_job_running: Callable[[str], bool] = lambda _server_id: False
        self.duration: Callable[[Any], float] = lambda d: float(d)
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
        self.servers[server.id] = server
        self.by_project.setdefault(project_id, []).append(server.id)
        return server

    # ---- queries -------------------------------------------------------------------------------------

    def get(self, project_id: str, server_id: str) -> Server:
        server = self.servers.get(server_id)
        if server is None or server.project_id != project_id:
            raise ecs_error("Ecs.0114", status=404)
        return server

    def find(self, project_id: str, server_id: str) -> Server | None:
        server = self.servers.get(server_id)
        return server if server is not None and server.project_id == project_id else None

    def server_body(self, server: Server) -> dict[str, Any]:
        """The ``server`` object of the details and list APIs."""
        server._settle()
        flavor = FLAVORS.get(server.flavor, {"vcpus": "2", "ram": "4096"})
        vpc_id = stable_hex("vpc", server.project_id)
        vpc_uuid = f"{vpc_id[:8]}-{vpc_id[8:12]}-{vpc_id[12:16]}-{vpc_id[16:20]}-{vpc_id[20:]}"
        mac = stable_hex("mac", server.id)
        volume = stable_hex("volume", server.id)
        metadata = {
            "image_name": server.os_version,
            "os_type": server.os_type,
            "os_bit": "64",
            "vpc_id": vpc_uuid,
            "charging_mode": "0",
            "metering.image_id": server.image_id,
            "metering.imagetype": "gold",
            "metering.resourcespeccode": server.flavor,
            "metering.resourcetype": "1",
        }
        metadata.update(server.metadata)
        return {
            "fault": None,
            "id": server.id,
            "name": server.name,
            "addresses": {
                vpc_uuid: [
                    {
                        "version": "4",
                        "addr": server.ip,
                        "primary": True,
                        "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:" + ":".join(mac[i : i + 2] for i in (0, 2, 4)),
                        "OS-EXT-IPS:type": "fixed",
                        "OS-EXT-IPS:port_id": stable_hex("port", server.id),
                    }
                ]
            },
            "flavor": {
                "disk": "0",
                "vcpus": flavor["vcpus"],
                "ram": flavor["ram"],
                "id": server.flavor,
                "name": server.flavor,
            },
            "accessIPv4": "",
            "accessIPv6": "",
            "status": server.status,
            "progress": 0,
            "hostId": stable_hex("host", server.id) + stable_hex("host2", server.id)[:24],
            "updated": fmt_seconds(server.updated_at),
            "created": fmt_seconds(server.created_at),
            "metadata": metadata,
            "tags": list(server.tags),
            "description": "",
            "locked": server.locked,
            "config_drive": "",
            "tenant_id": server.project_id,
            "user_id": stable_hex("user", server.project_id),
            "key_name": None,
            "os-extended-volumes:volumes_attached": [
                {
                    "id": f"{volume[:8]}-{volume[8:12]}-{volume[12:16]}-{volume[16:20]}-{volume[20:]}",
                    "delete_on_termination": "false",
                    "device": "/dev/vda",
                    "bootIndex": "0",
                }
            ],
            "OS-EXT-STS:task_state": server.task_state,
            "OS-EXT-STS:power_state": server.power_state,
            "OS-EXT-STS:vm_state": server.vm_state,
            "OS-EXT-SRV-ATTR:host": "localcloud",
            "OS-EXT-SRV-ATTR:instance_name": "instance-" + stable_hex("inst", server.id)[:8],
            "OS-EXT-SRV-ATTR:hypervisor_hostname": "localcloud",
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": server.availability_zone,
            "os:scheduler_hints": {},
            "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
            "OS-SRV-USG:launched_at": server.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
            "OS-SRV-USG:terminated_at": None,
            "host_status": "UP",
            "sys_tags": [{"key": "_sys_enterprise_project_id", "value": "0"}],
            "security_groups": [{"id": stable_hex("sg", server.project_id), "name": "default"}],
            "image": {"id": server.image_id},
            # The remaining documented fields: what an ordinary pay-per-use ECS shows (values per the page).
            "OS-EXT-SRV-ATTR:hostname": server.name,
            "OS-EXT-SRV-ATTR:kernel_id": "",
            "OS-EXT-SRV-ATTR:ramdisk_id": "",
            "OS-EXT-SRV-ATTR:launch_index": 0,
            "OS-EXT-SRV-ATTR:reservation_id": _reservation_id(server.id),
            "OS-EXT-SRV-ATTR:user_data": None,
            "hypervisor": None,
            "enclave_options": {"enabled": False},
            "security_options": {"tpm_enabled": None},
            "cpu_options": {"hw:cpu_threads": None},
            "auto_terminate_time": "",
            "spod_id": "",
            "capacity_reservation_id": "",
            "capacity_reservation_specification": {"id": None, "preference": None},
        }

    def list_servers(self, project_id: str, query: dict[str, str]) -> dict[str, Any]:
        """``GET /v1/{project_id}/cloudservers/detail`` with the filters and paging of the list page.

        [inference] A query parameter the page does not list (a misspelling such as ``not_tags`` or
        ``tag``), or a ``status`` outside the page's value range, is Ecs.0005 rather than ignored.
        """
        if set(query) - LIST_QUERY_KEYS:
            raise ecs_error("Ecs.0005")
        if "status" in query and query["status"] not in LIST_STATUSES:
            raise ecs_error("Ecs.0005")
        try:
            offset = int(query.get("offset", "1") or "1")
            limit = int(query.get("limit", "25") or "25")
        except ValueError:
            raise ecs_error("Ecs.0005") from None
        if offset < 0 or limit < 0:
            raise ecs_error("Ecs.0005")
        page = max(offset, 1)  # "If the value is 0, the first page is displayed, the same as 1."
        limit = min(limit, 1000)  # "a maximum of 1,000 ECSs are returned"
        name = _fuzzy_name(query["name"]) if query.get("name") else None
        # The page (rows tags / not-tags): "Queries ECSs with tags containing the specified value" (not
        # containing, for not-tags). [inference] The value is one tag string ("key=value", or a bare key
        # such as the page's not-tags=__type_baremetal); a server matches when one of its tags equals it.
        # A comma is not a separator: "a=1,b=2" is one (odd) tag string and matches no server.
        tags = query.get("tags") or None
        not_tags = query.get("not-tags") or None
        status = query.get("status")
        flavor = query.get("flavor")
        ip = query.get("ip")
        reservation_id = query.get("reservation_id")
        matched: list[Server] = []
        for sid in self.by_project.get(project_id, []):
            s = self.servers[sid]
            if name and not name.search(s.name):
                continue
            if status and s.status != status:
                continue
            if flavor and s.flavor != flavor:
                continue
            if ip and ip not in s.ip:
                continue
            if reservation_id and reservation_id != _reservation_id(s.id):
                continue
            if tags is not None and tags not in s.tags:
                continue
            if not_tags is not None and not_tags in s.tags:
                continue
            matched.append(s)
        window = matched[(page - 1) * limit : page * limit] if limit else []
        return {"count": len(matched), "servers": [self.server_body(s) for s in window]}

    # ---- actions -------------------------------------------------------------------------------------

    def action(self, project_id: str, body: Any, fault: JobFault | None = None) -> str:
        """``POST /v1/{project_id}/cloudservers/action`` with ``os-stop`` / ``os-start``; returns a job id."""
        if not isinstance(body, dict) or not body:
            raise ecs_error("Common.0002")
        if len(body) != 1:
            # [inference] The stop/start pages show a body with the one action key; two actions (or an
            # action plus anything else) in one request are invalid.
            raise ecs_error("Ecs.0005")
        if "os-stop" in body:
            kind: PowerKind = "stop"
            spec = body["os-stop"]
        elif "os-start" in body:
            kind = "start"
            spec = body["os-start"]
        else:
            raise ecs_error("Ecs.0005")
        if not isinstance(spec, dict) or not isinstance(spec.get("servers"), list) or not spec["servers"]:
            raise ecs_error("Ecs.0005")
        # The pages' request tables: os-stop {servers, type}, os-start {servers}, each server {id}.
        # [inference] Another field (a misspelling such as "Type" or "server") is Ecs.0005.
        if set(spec) - ({"servers", "type"} if kind == "stop" else {"servers"}):
            raise ecs_error("Ecs.0005")
        if kind == "stop" and spec.get("type", "SOFT") not in ("SOFT", "HARD"):
            raise ecs_error("Ecs.0005")
        ids: list[str] = []
        for item in spec["servers"]:
            if not isinstance(item, dict) or set(item) != {"id"} or not isinstance(item.get("id"), str):
                raise ecs_error("Ecs.0005")
            ids.append(item["id"])
        # [inference] unknown ids are refused up front rather than failing inside the job.
        servers = [self.get(project_id, sid) for sid in ids]

        now = self.clock.now()
        seconds = self.duration(self.timing.stop_seconds if kind == "stop" else self.timing.start_seconds)
        fault = fault or JobFault()
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
        return job.id

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
        if server.busy or self.image_job_running(server.id):
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

    def job_body(self, project_id: str, job_id: str) -> dict[str, Any]:
        """``GET /v1/{project_id}/jobs/{job_id}`` on the ECS endpoint."""
        job = self.jobs.get(job_id)
        if job is None or job.project_id != project_id:
            # The job page: top-level ``code``/``message`` appear when the job query itself fails
            # (Common.0011 = bad job id). [inference] We also keep the usual ``error`` object of ECS errors.
            err = ecs_error("Common.0011")
            assert err.body is not None
            err.body.update(err.body["error"])
            raise err
        now = self.clock.now()
        status = job.status(now)
        subs = []
        ends: list[datetime] = []
        failed: SubJob | None = None
        for s in job.sub_jobs:
            st = s.status(now)
            end = s.end_time(now)
            if end:
                ends.append(end)
            entities: dict[str, Any] = {"server_id": s.server_id}
            if st == "FAIL":
                failed = failed or s
                entities["errorcode_message"] = s.fail_reason
            subs.append(
                {
                    "status": st,
                    "entities": entities,
                    "job_id": s.id,
                    "job_type": s.job_type,
                    "begin_time": fmt_millis(s.timeline.started_at),
                    "end_time": fmt_millis(end) if end else None,
                    "error_code": s.error_code if st == "FAIL" else None,
                    "fail_reason": s.fail_reason if st == "FAIL" else None,
                }
            )
        terminal = status in ("SUCCESS", "FAIL")
        return {
            "status": status,
            "entities": {"sub_jobs_total": len(subs), "sub_jobs": subs},
            "job_id": job.id,
            "job_type": job.job_type,
            "begin_time": fmt_millis(job.created_at),
            # [inference] end_time is null while the job runs.
            "end_time": fmt_millis(max(ends))
            if terminal and ends
            else (fmt_millis(now) if terminal else None),
            "error_code": failed.error_code if status == "FAIL" and failed else None,
            "fail_reason": failed.fail_reason if status == "FAIL" and failed else None,
        }


def check_project(token_project: str | None, url_project: str) -> None:
    """ECS carries the project in the URL; it must be the token's (contract: ``Ecs.0023``)."""
    if token_project != url_project:
        raise ecs_error("Ecs.0023")


__all__ = ["CloudError", "Ecs", "EcsJob", "JobFault", "Server", "check_project"]
