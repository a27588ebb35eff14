"""ECS on the wire: reading requests into :class:`~localcloud.ecs.state.Ecs` calls, writing the bodies.

One function per operation (``handler(ecs, call, **path parameters) -> Reply``) and the routing table
:data:`ROUTES`, registered by ``app.py``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from localcloud.clock import fmt_millis, fmt_seconds
from localcloud.ecs.state import Ecs, EcsJob, Server, ServerFilters, SubJob
from localcloud.errors import ecs_error
from localcloud.gateway import Call, Reply, Route
from localcloud.seed import stable_hex

FLAVORS: dict[str, dict[str, str]] = {
    # [inference] a few common flavors so the server body carries plausible numbers.
    "s3.large.2": {"vcpus": "2", "ram": "4096"},
    "s3.xlarge.2": {"vcpus": "4", "ram": "8192"},
    "s3.large.1": {"vcpus": "2", "ram": "2048"},
    "s3.medium.2": {"vcpus": "1", "ram": "2048"},
}
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

# ---- servers ----------------------------------------------------------------------------------------------


def show_server(ecs: Ecs, call: Call, project_id: str, server_id: str) -> Reply:
    """``GET /v1/{project_id}/cloudservers/{server_id}``."""
    return Reply({"server": server_body(ecs.show_server(project_id, server_id))})


def list_servers(ecs: Ecs, call: Call, project_id: str) -> Reply:
    """``GET /v1/{project_id}/cloudservers/detail`` with the filters and paging of the list page.

    [inference] A query parameter the page does not list (a misspelling such as ``not_tags`` or
    ``tag``), or a ``status`` outside the page's value range, is Ecs.0005 rather than ignored.
    """
    query = call.query
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
    # The page (rows tags / not-tags): "Queries ECSs with tags containing the specified value" (not
    # containing, for not-tags). [inference] The value is one tag string ("key=value", or a bare key
    # such as the page's not-tags=__type_baremetal); a server matches when one of its tags equals it.
    # A comma is not a separator: "a=1,b=2" is one (odd) tag string and matches no server.
    filters = ServerFilters(
        name=query.get("name") or None,
        status=query.get("status") or None,
        flavor=query.get("flavor") or None,
        ip=query.get("ip") or None,
        reservation_id=query.get("reservation_id") or None,
        tags=query.get("tags") or None,
        not_tags=query.get("not-tags") or None,
    )
    matched = ecs.list_servers(project_id, filters)
    window = matched[(page - 1) * limit : page * limit] if limit else []
    return Reply({"count": len(matched), "servers": [server_body(s) for s in window]})


def server_body(server: Server) -> dict[str, Any]:
    """The ``server`` object of the details and list APIs."""
    server.settle()
    flavor = FLAVORS.get(server.flavor, {"vcpus": "2", "ram": "4096"})
    vpc_id = stable_hex("vpc", server.project_id)
    vpc_uuid = f"{vpc_id[:8]}-{vpc_id[8:12]}-{vpc_id[12:16]}-{vpc_id[16:20]}-{vpc_id[20:]}"
    mac = stable_hex("mac", server.id)
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
        # The pages' examples: strings throughout ("bootIndex": "0" for the system disk).
        # [inference] "delete_on_termination" "false" for data disks too (as the examples' system disks).
        "os-extended-volumes:volumes_attached": [
            {
                "id": v.id,
                "delete_on_termination": "false",
                "device": v.device,
                "bootIndex": str(v.boot_index),
            }
            for v in server.volumes
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
        "OS-EXT-SRV-ATTR:reservation_id": server.reservation_id,
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


# ---- actions ----------------------------------------------------------------------------------------------


def _json_or_none(raw: bytes) -> Any:
    """The body as JSON (None when empty); :class:`ValueError` when it is not JSON."""
    return json.loads(raw) if raw.strip() else None


def action_operation(raw: bytes) -> str:
    """The stats name of a ``cloudservers/action`` request: the body says whether it starts or stops."""
    try:
        body = _json_or_none(raw)
    except ValueError:
        body = None
    return "ecs.start_servers" if isinstance(body, dict) and "os-start" in body else "ecs.stop_servers"


def server_action(ecs: Ecs, call: Call, project_id: str) -> Reply:
    """``POST /v1/{project_id}/cloudservers/action`` with ``os-stop`` / ``os-start``: ``{"job_id"}``."""
    try:
        body = _json_or_none(call.raw)
    except ValueError:
        raise ecs_error("Ecs.0005") from None
    if not isinstance(body, dict) or not body:
        raise ecs_error("Common.0002")
    if len(body) != 1:
        # [inference] The stop/start pages show a body with the one action key; two actions (or an
        # action plus anything else) in one request are invalid.
        raise ecs_error("Ecs.0005")
    if "os-stop" in body:
        stop = True
        spec = body["os-stop"]
    elif "os-start" in body:
        stop = False
        spec = body["os-start"]
    else:
        raise ecs_error("Ecs.0005")
    if not isinstance(spec, dict) or not isinstance(spec.get("servers"), list) or not spec["servers"]:
        raise ecs_error("Ecs.0005")
    # The pages' request tables: os-stop {servers, type}, os-start {servers}, each server {id}.
    # [inference] Another field (a misspelling such as "Type" or "server") is Ecs.0005.
    if set(spec) - ({"servers", "type"} if stop else {"servers"}):
        raise ecs_error("Ecs.0005")
    # The stop type (SOFT/HARD) is checked but changes nothing locally.
    if stop and spec.get("type", "SOFT") not in ("SOFT", "HARD"):
        raise ecs_error("Ecs.0005")
    ids: list[str] = []
    for item in spec["servers"]:
        if not isinstance(item, dict) or set(item) != {"id"} or not isinstance(item.get("id"), str):
            raise ecs_error("Ecs.0005")
        ids.append(item["id"])
    power = ecs.stop_servers if stop else ecs.start_servers
    return Reply({"job_id": power(project_id, ids, fault=call.job_fault).id})


# ---- jobs -------------------------------------------------------------------------------------------------


def show_job(ecs: Ecs, call: Call, project_id: str, job_id: str) -> Reply:
    """``GET /v1/{project_id}/jobs/{job_id}`` on the ECS endpoint."""
    return Reply(job_body(ecs.show_job(project_id, job_id), ecs.clock.now()))


def job_body(job: EcsJob, now: datetime) -> dict[str, Any]:
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
        "end_time": fmt_millis(max(ends)) if terminal and ends else (fmt_millis(now) if terminal else None),
        "error_code": failed.error_code if status == "FAIL" and failed else None,
        "fail_reason": failed.fail_reason if status == "FAIL" and failed else None,
    }


# Order matters: ``detail`` before ``{server_id}``.
ROUTES: tuple[Route, ...] = (
    Route("ecs", "GET", "/v1/{project_id}/cloudservers/detail", "ecs.list_servers", list_servers),
    Route("ecs", "GET", "/v1/{project_id}/cloudservers/{server_id}", "ecs.show_server", show_server),
    Route("ecs", "POST", "/v1/{project_id}/cloudservers/action", action_operation, server_action),
    # Shared with IMS on one base URL: app.py serves the bare path and tells the two apart by the job id.
    Route("ecs", "GET", "/v1/{project_id}/jobs/{job_id}", "ecs.show_job", show_job, shared=False),
)
