"""IMS state and rules: images, image jobs (create from ECS, export), the emulated OBS buckets. No HTTP.

An image created from an ECS shows up at once as ``queued`` (job INIT), then ``saving`` (job RUNNING), then
``active`` (job SUCCESS) or ``killed`` (job FAIL) — all computed from the job's timeline and the clock.
"""

from __future__ import annotations

import heapq
import json
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from localcloud.clock import Clock, fmt_millis, fmt_seconds
from localcloud.ecs import Ecs, JobFault
from localcloud.errors import CloudError, ims_error
from localcloud.lifecycle import Lifecycle, Timeline, progress_percent
from localcloud.seed import ImageSeed, Seed, stable_hex, stable_uuid

JOB_CREATE = "imsCreateImageByInstance"
JOB_EXPORT = "imsNativeExportImageJob"
IMAGE_STATUS_BY_JOB = {"INIT": "queued", "RUNNING": "saving", "SUCCESS": "active", "FAIL": "killed"}
PUBLIC_OWNER = stable_hex("public-images-owner")
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"

NAME_CHARS = re.compile(r"^[A-Za-z0-9\-._ ]+\Z")  # \Z: "$" would let a final "\n" through
TAG_CHARS = re.compile(r"^[A-Za-z0-9_-]*\Z")
# [inference] OBS bucket naming: 3-63 characters, lowercase letters, digits, hyphens and periods.
BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EXPORT_FORMATS = ("qcow2", "vhd", "zvhd", "vmdk")
SORT_KEYS = ("name", "container_format", "disk_format", "status", "id", "size", "created_at")
UNSUPPORTED_CREATE_FIELDS = ("image_url", "data_images", "volume_id", "backup_id")
# Every request field creating_an_image.rst documents (its three request tables: from an ECS, from an OBS
# file, from a data disk). [inference] A field outside this list is a misspelling: IMG.0001.
CREATE_FIELDS = frozenset(
    {
        "name",
        "description",
        "instance_id",
        "data_images",
        "tags",
        "image_tags",
        "enterprise_project_id",
        "max_ram",
        "min_ram",
        "os_type",
        "os_version",
        "image_url",
        "min_disk",
        "is_config",
        "cmk_id",
        "type",
        "is_quick_import",
        "hw_firmware_type",
        "volume_id",
    }
)
# querying_images.rst, query table (Table 1).
LIST_QUERY_KEYS = frozenset(
    {
        "__isregistered",
        "__imagetype",
        "__whole_image",
        "__system__cmkid",
        "protected",
        "visibility",
        "owner",
        "id",
        "status",
        "name",
        "container_format",
        "disk_format",
        "min_ram",
        "min_disk",
        "__os_bit",
        "__platform",
        "marker",
        "limit",
        "sort_key",
        "sort_dir",
        "__os_type",
        "tag",
        "member_status",
        "__support_kvm",
        "__support_xen",
        "__support_largememory",
        "__support_diskintensive",
        "__support_highperformance",
        "__support_xen_gpu_type",
        "__support_kvm_gpu_type",
        "__support_xen_hana",
        "__support_kvm_infiniband",
        "virtual_env_type",
        "enterprise_project_id",
        "created_at",
        "updated_at",
    }
)
# exporting_an_image.rst, request table.
EXPORT_FIELDS = frozenset({"bucket_url", "file_format", "is_quick_export"})


@dataclass
class ExportTarget:
    bucket: str
    file: str
    file_format: str
    quick: bool


@dataclass
class ImsJob:
    id: str
    project_id: str
    job_type: str
    timeline: Timeline
    image_id: str
    image_name: str
    instance_id: str | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    export: ExportTarget | None = None
    applied: bool = False  # terminal side effects (the OBS object) done

    @property
    def created_at(self) -> datetime:
        return self.timeline.started_at

    def status(self, now: datetime) -> str:
        return self.timeline.status(now)

    def end_time(self, now: datetime) -> datetime | None:
        return self.timeline.end_time(now)


@dataclass
class Image:
    id: str
    name: str
    owner: str
    visibility: str
    imagetype: str  # "gold" | "private" | "shared"
    tags: list[str]
    description: str
    min_disk: int
    min_ram: int
    max_ram: int | None
    os_version: str
    os_type: str
    platform: str
    protected: bool
    disk_format: str
    image_size: int
    instance_id: str | None
    original_image_id: str
    created_at: datetime
    base_status: str
    base_updated_at: datetime
    seq: int
    clock: Clock = field(repr=False)
    enterprise_project_id: str = "0"
    job: ImsJob | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        if self.job is None:
            return self.base_status
        return IMAGE_STATUS_BY_JOB[self.job.status(self.clock.now())]

    @property
    def updated_at(self) -> datetime:
        if self.job is None:
            return self.base_updated_at
        return self.job.timeline.at(self.clock.now()).entered_at

    @property
    def active_at(self) -> datetime | None:
        if self.job is None:
            return self.base_updated_at if self.base_status == "active" else None
        if self.status != "active":
            return None
        return self.job.timeline.entered_at("SUCCESS")

    @property
    def size_now(self) -> int:
        return self.image_size if self.status == "active" else 0


def _parse_json_body(raw: bytes) -> dict[str, Any]:
    """IMS body rules: nothing -> IMG.0007, not JSON / not an object -> IMG.0001, ``{}`` -> IMG.0007."""
    if not raw.strip():
        raise ims_error("IMG.0007")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ims_error("IMG.0001") from None
    if not isinstance(body, dict):
        raise ims_error("IMG.0001")
    if not body:
        raise ims_error("IMG.0007")
    return body


def validate_name(name: Any) -> str:
    if name is None or name == "":
        raise ims_error("IMG.0013")
    if not isinstance(name, str):
        raise ims_error("IMG.0001")
    if len(name) > 128:
        raise ims_error("IMG.0002")
    if not NAME_CHARS.match(name) or name != name.strip(" "):
        raise ims_error("IMG.0003")
    return name


def validate_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise ims_error("IMG.0001")
    if len(description) > 1024:
        raise ims_error("IMG.0004")
    # "Carriage returns and angle brackets (< >) are not allowed." [inference] \n counts as a line break too.
    if any(ch in description for ch in "\r\n<>"):
        raise ims_error("IMG.0054")
    return description


def validate_tags(tags: Any, image_tags: Any, max_tags: int) -> list[str]:
    """Both forms end up as ``key.value`` strings; a repeated key updates the earlier one."""
    if tags is not None and image_tags is not None:
        # "Use either tags or image_tags." [inference] both given -> the tag is invalid.
        raise ims_error("IMG.0115")
    pairs: dict[str, str] = {}
    if tags is not None:
        if not isinstance(tags, list):
            raise ims_error("IMG.0115")
        for tag in tags:
            if not isinstance(tag, str) or "." not in tag:
                raise ims_error("IMG.0115")
            key, value = tag.split(".", 1)
            _check_tag(key, value, charset=True)
            pairs[key] = value
    if image_tags is not None:
        if not isinstance(image_tags, list):
            raise ims_error("IMG.0115")
        for item in image_tags:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("key"), str)
                or not isinstance(item.get("value"), str)
            ):
                raise ims_error("IMG.0115")
            # "If the first and last characters of the tag key and value are spaces, the system deletes them."
            key, value = item["key"].strip(" "), item["value"].strip(" ")
            _check_tag(key, value, charset=False)
            pairs[key] = value
    if len(pairs) > max_tags:
        raise ims_error("IMG.0116")
    return [f"{k}.{v}" for k, v in pairs.items()]


def _check_tag(key: str, value: str, *, charset: bool) -> None:
    if not key or len(key) > 36 or len(value) > 43:
        raise ims_error("IMG.0115")
    if charset and not (TAG_CHARS.match(key) and TAG_CHARS.match(value)):
        raise ims_error("IMG.0115")


def _ram(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ims_error("IMG.0001")
    if value < 0:
        raise ims_error("IMG.0055")
    return value


_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S")
_OPS: dict[str, Callable[[datetime, datetime], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}


def _time_filter(expr: str) -> Callable[[datetime], bool]:
    """``gt:2018-10-28T10:00:00Z`` (or ``yyyy-MM-dd hh:mm:ss``) -> predicate on a datetime."""
    op, sep, text = expr.partition(":")
    if not sep or op not in _OPS:
        raise ims_error("IMG.0001")
    for fmt in _TIME_FORMATS:
        try:
            bound = datetime.strptime(text, fmt).replace(tzinfo=UTC)
            break
        except ValueError:
            continue
    else:
        raise ims_error("IMG.0001")
    compare = _OPS[op]
    return lambda t: compare(t.replace(microsecond=0), bound)


def _attr_equals(attr: str, value: str) -> Callable[[Image], bool]:
    return lambda image: str(getattr(image, attr)) == value


class Ims:
    """The image management service of the local cloud (with the OBS buckets it exports into)."""

    def __init__(self, seed: Seed, clock: Clock, ecs: Ecs, project_ids: Callable[[str], str | None]) -> None:
        self.clock = clock
        self.ecs = ecs
        self.timing = seed.timing
        self.limits = seed.limits
        self.images: dict[str, Image] = {}
        self.jobs: dict[str, ImsJob] = {}
        self.buckets: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in seed.buckets}
        self.duration: Callable[[Any], float] = lambda d: float(d)
        self._seq = 0
        # Jobs not settled yet, and a heap of (end time, job id) for those that will end: settling pops only
        # what has ended, so a fleet of running jobs costs O(log n) per request, not O(n).
        self._pending: set[str] = set()
        self._ends: list[tuple[datetime, int, str]] = []
        self._running_creates: Counter[str] = Counter()  # project -> create-image jobs not ended
        self._private_count: Counter[str] = Counter()  # project -> private images
        # instance id -> its latest create-image job, for "has in-progress tasks" in O(1).
        self._instance_job: dict[str, str] = {}
        # image id -> its running export job.
        self._image_export: dict[str, str] = {}
        now = clock.now()
        for img in seed.images:
            owner = project_ids(img.project) if img.project else None
            self._add_seed_image(img, owner, now)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _add_seed_image(self, s: ImageSeed, owner: str | None, now: datetime) -> None:
        created = s.created_at or now
        public = s.visibility == "public"
        if s.visibility == "private" and owner:
            self._private_count[owner] += 1
        self.images[s.id] = Image(
            id=s.id,
            name=s.name,
            owner=owner or PUBLIC_OWNER,
            visibility=s.visibility,
            imagetype="gold" if public else s.visibility,
            tags=list(s.tags),
            description=s.description,
            min_disk=s.min_disk,
            min_ram=s.min_ram,
            max_ram=None,
            os_version=s.os_version,
            os_type=s.os_type,
            platform=s.platform,
            protected=s.protected or public,
            disk_format=s.disk_format,
            image_size=s.image_size,
            instance_id=s.instance_id,
            original_image_id="" if public else stable_uuid("image", s.os_version),
            created_at=created,
            base_status=s.status,
            base_updated_at=s.updated_at or created,
            seq=self._next_seq(),
            clock=self.clock,
        )

    # ---- lazy settlement ------------------------------------------------------------------------------

    def _track(self, job: ImsJob) -> None:
        self.jobs[job.id] = job
        self._pending.add(job.id)
        if job.job_type == JOB_CREATE:
            self._running_creates[job.project_id] += 1
        names = [p.name for p in job.timeline.lifecycle.phases]
        terminal = "SUCCESS" if "SUCCESS" in names else "FAIL"
        end = job.timeline.entered_at(terminal)
        if end is not None:  # a stuck job never ends and never settles
            heapq.heappush(self._ends, (end, self._next_seq(), job.id))

    def settle(self) -> None:
        """Apply the side effects of jobs that have ended by now (counters, the exported OBS object)."""
        now = self.clock.now()
        while self._ends and self._ends[0][0] <= now:
            _, _, job_id = heapq.heappop(self._ends)
            job = self.jobs[job_id]
            status = job.status(now)
            self._pending.discard(job_id)
            if job.job_type == JOB_CREATE:
                self._running_creates[job.project_id] -= 1
            if job.export is not None:
                self._image_export.pop(job.image_id, None)
                if status == "SUCCESS" and not job.applied:
                    image = self.images.get(job.image_id)
                    end = job.end_time(now) or now
                    self.buckets.setdefault(job.export.bucket, {})[job.export.file] = {
                        "image_id": job.image_id,
                        "file_format": "zvhd2" if job.export.quick else job.export.file_format,
                        "is_quick_export": job.export.quick,
                        "size": image.image_size if image else 0,
                        "created_at": fmt_seconds(end),
                    }
            job.applied = True

    @property
    def obs(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The emulated OBS: bucket -> {file: metadata}, with finished exports written."""
        self.settle()
        return self.buckets

    def image_job_running(self, instance_id: str) -> bool:
        job_id = self._instance_job.get(instance_id)
        if job_id is None:
            return False
        return self.jobs[job_id].status(self.clock.now()) in ("INIT", "RUNNING")

    def running_image_jobs(self, project_id: str) -> int:
        """Create-image jobs of ``project_id`` in INIT or RUNNING (stuck ones included)."""
        self.settle()
        return self._running_creates[project_id]

    # ---- create image from an ECS ---------------------------------------------------------------------

    def create_image(self, project_id: str, raw: bytes, fault: JobFault | None = None) -> str:
        """``POST /v2/cloudimages/action`` (system-disk image from an ECS); returns the job id.

        [inference] Validation order: body, unsupported modes, name, description, tags, instance_id,
        memory, then the ECS (exists, no task in progress, stopped), name uniqueness (if switched on),
        quota, concurrent-job cap.
        """
        body = _parse_json_body(raw)
        if set(body) - CREATE_FIELDS:
            raise ims_error("IMG.0001")  # [inference] an undocumented field (see CREATE_FIELDS)
        if any(body.get(k) is not None for k in UNSUPPORTED_CREATE_FIELDS):
            # Only "create a system disk image from an ECS" is emulated.
            raise ims_error("IMG.0105")
        name = validate_name(body.get("name"))
        description = validate_description(body.get("description"))
        tags = validate_tags(body.get("tags"), body.get("image_tags"), self.limits.max_image_tags)
        instance_id = body.get("instance_id")
        if instance_id is None or instance_id == "":
            raise ims_error("IMG.0012")
        if not isinstance(instance_id, str):
            raise ims_error("IMG.0001")
        min_ram = _ram(body.get("min_ram")) or 0
        max_ram = _ram(body.get("max_ram"))
        if max_ram and min_ram and max_ram < min_ram:
            raise ims_error("IMG.0055")
        eps = body.get("enterprise_project_id", "0")
        if not isinstance(eps, str):
            raise ims_error("IMG.0001")

        server = self.ecs.find(project_id, instance_id)
        if server is None:
            raise ims_error("IMG.0005")
        if server.busy or self.image_job_running(server.id):
            raise ims_error("IMG.0010")
        if server.status != "SHUTOFF":
            # The seed dev guide: "Before creating an image, ensure that the ECS is stopped."
            raise ims_error("IMG.0008")
        if self.limits.unique_image_names and any(
            i.name == name and i.owner == project_id for i in self.images.values()
        ):
            raise ims_error("IMG.0009")
        if self.private_image_count(project_id) >= self.limits.image_quota:
            raise ims_error("IMG.0015")
        if self.running_image_jobs(project_id) >= self.limits.max_running_image_jobs:
            raise ims_error("IMG.0060")

        fault = fault or JobFault()
        now = self.clock.now()
        run = None if fault.stuck else self.duration(self.timing.image_job_seconds)
        outcome = "FAIL" if fault.fail else "SUCCESS"
        timeline = Timeline(
            Lifecycle.of(("INIT", self.timing.job_init_seconds), ("RUNNING", run), (outcome, None)), now
        )
        image_id = str(uuid.uuid4())
        job = ImsJob(
            id=secrets.token_hex(16),
            project_id=project_id,
            job_type=JOB_CREATE,
            timeline=timeline,
            image_id=image_id,
            image_name=name,
            instance_id=server.id,
        )
        if fault.fail:
            job.error_code = fault.error_code or "IMG.0014"
            job.fail_reason = fault.fail_reason or ims_error(job.error_code).body["error"]["message"]  # type: ignore[index]
        self.images[image_id] = Image(
            id=image_id,
            name=name,
            owner=project_id,
            visibility="private",
            imagetype="private",
            tags=tags,
            description=description,
            min_disk=server.system_disk_gb,
            min_ram=min_ram,
            max_ram=max_ram,
            os_version=server.os_version,
            os_type=server.os_type,
            platform=server.platform,
            protected=False,
            disk_format="zvhd2",
            # [inference] a plausible size: a quarter of the system disk is used.
            image_size=server.system_disk_gb * 1024**3 // 4,
            instance_id=server.id,
            original_image_id=server.image_id,
            created_at=now,
            base_status="queued",
            base_updated_at=now,
            seq=self._next_seq(),
            clock=self.clock,
            enterprise_project_id=eps or "0",
            job=job,
        )
        self._private_count[project_id] += 1
        self._track(job)
        self._instance_job[server.id] = job.id
        return job.id

    def private_image_count(self, project_id: str) -> int:
        return self._private_count[project_id]

    # ---- jobs -----------------------------------------------------------------------------------------

    def job_body(self, project_id: str, job_id: str, *, progress: bool = False) -> dict[str, Any]:
        """``GET /v1/{project_id}/jobs/{job_id}`` on the IMS endpoint; with ``progress``, Huawei Cloud's
        ``GET /v1/cloudimages/job/{job_id}`` (ShowJobProgress, contract §6.8).

        Both have the same top-level fields. [inference] ShowJobProgress's entities always carry
        ``image_id``, ``image_name`` and ``process_percent`` (a number: 0 in INIT, the RUNNING share done,
        100 on SUCCESS, 0 on FAIL — the status, not the percent, tells that a job ended).
        """
        self.settle()
        job = self.jobs.get(job_id)
        if job is None or job.project_id != project_id:
            # [inference] The job page lists 400/401/403/500/503 (no 404); IMG.0023 "An exception occurred
            # during task query." is the query error. The same for an unknown or another project's job,
            # and on the ShowJobProgress path.
            raise ims_error("IMG.0023")
        now = self.clock.now()
        pos = job.timeline.at(now)
        status = pos.name
        entities: dict[str, Any] = {}
        if progress:
            percent = {"INIT": 0.0, "SUCCESS": 100.0, "FAIL": 0.0}.get(status)
            if percent is None:
                percent = progress_percent(pos.fraction, self.timing.progress_profile)
            entities = {"image_id": job.image_id, "image_name": job.image_name, "process_percent": percent}
        elif job.job_type == JOB_CREATE:
            if status == "RUNNING":
                # [inference] not on the OTC page; Huawei Cloud's job progress API reports
                # entities.process_percent. Ours: percent of the RUNNING phase done, 0-100.
                entities["process_percent"] = progress_percent(pos.fraction, self.timing.progress_profile)
            if status in ("SUCCESS", "FAIL"):
                entities["image_name"] = job.image_name
                entities["image_id"] = job.image_id
        else:
            entities["image_id"] = job.image_id
            if status == "RUNNING":
                entities["process_percent"] = progress_percent(pos.fraction, self.timing.progress_profile)
        end = job.end_time(now)
        return {
            "job_id": job.id,
            "job_type": job.job_type,
            "begin_time": fmt_millis(job.created_at),
            # [inference] end_time is null until the job ends.
            "end_time": fmt_millis(end) if end else None,
            "status": status,
            "error_code": job.error_code if status == "FAIL" else None,
            "fail_reason": job.fail_reason if status == "FAIL" else None,
            "entities": entities,
        }

    # ---- images ---------------------------------------------------------------------------------------

    def _visible(self, image: Image, project_id: str) -> bool:
        return image.owner == project_id or image.visibility == "public"

    def get_visible(self, project_id: str, image_id: str) -> Image:
        image = self.images.get(image_id)
        if image is None or not self._visible(image, project_id):
            # The Glance-native pages list 404 "The requested resource was not found." (no body documented).
            # [inference] The body: IMS's shape with IMG.0144 "The image does not exist.", HTTP 404.
            raise ims_error("IMG.0144", status=404)
        return image

    def image_body(self, image: Image) -> dict[str, Any]:
        """An image as ``GET /v2/images/{id}`` and the ``images`` list show it."""
        status = image.status
        body: dict[str, Any] = {
            "schema": "/v2/schemas/image",
            "min_disk": image.min_disk,
            "created_at": fmt_seconds(image.created_at),
            "__image_source_type": "uds",
            "container_format": "bare",
            "file": f"/v2/images/{image.id}/file",
            "updated_at": fmt_seconds(image.updated_at),
            "protected": image.protected,
            "checksum": EMPTY_MD5,
            "id": image.id,
            "__isregistered": "true",
            "min_ram": image.min_ram,
            "__lazyloading": "true",
            "owner": image.owner,
            "__os_type": image.os_type,
            "__imagetype": image.imagetype,
            "visibility": image.visibility,
            "virtual_env_type": "FusionCompute",
            "tags": list(image.tags),
            "__platform": image.platform,
            "size": 0,
            "__os_bit": "64",
            "__os_version": image.os_version,
            "name": image.name,
            "self": f"/v2/images/{image.id}",
            "disk_format": image.disk_format,
            "virtual_size": None,
            "hw_firmware_type": "bios",
            "status": status,
            "__description": image.description,
            "__image_size": str(image.size_now),
            "__support_kvm": "true",
            "enterprise_project_id": image.enterprise_project_id,
        }
        if image.max_ram is not None:
            body["max_ram"] = str(image.max_ram)  # a String in the list response table
        if image.imagetype != "gold":
            body["__originalimagename"] = image.original_image_id
            if image.instance_id:
                # [inference] the source of an ECS image, as Huawei Cloud shows it ("instance,<id>").
                body["__data_origin"] = f"instance,{image.instance_id}"
        active_at = image.active_at
        if active_at is not None:
            body["active_at"] = fmt_seconds(active_at)
        return body

    def show_image(self, project_id: str, image_id: str) -> dict[str, Any]:
        self.settle()
        return self.image_body(self.get_visible(project_id, image_id))

    def list_images(self, project_id: str, query: dict[str, str]) -> dict[str, Any]:
        """``GET /v2/cloudimages`` with the filters, sorting and paging of the page (contract §3.3)."""
        self.settle()
        preds: list[Callable[[Image], bool]] = []
        q = query
        if set(q) - LIST_QUERY_KEYS:
            # [inference] A parameter the page does not list (a misspelling such as "imagetype" or
            # "tags") is IMG.0001 rather than ignored (which would list every image).
            raise ims_error("IMG.0001")
        # Attributes every local image has the same value of (see image_body); [inference] a filter on an
        # attribute the local images never carry (__system__cmkid, the other __support_* flags) matches none.
        for key, have in (("__os_bit", "64"), ("__support_kvm", "true"), ("__whole_image", "false")):
            if key in q and q[key] != have:
                preds.append(lambda i: False)
        for key in LIST_QUERY_KEYS:
            if key.startswith(("__support_", "__system__")) and key != "__support_kvm" and key in q:
                preds.append(lambda i: False)
        imagetype = q.get("__imagetype")
        if imagetype is not None:
            if imagetype not in ("gold", "private", "shared"):
                raise ims_error("IMG.0001")
            preds.append(lambda i: i.imagetype == imagetype)
        for key, attr in (
            ("name", "name"),
            ("id", "id"),
            ("status", "status"),
            ("owner", "owner"),
            ("visibility", "visibility"),
            ("__os_type", "os_type"),
            ("__platform", "platform"),
            ("disk_format", "disk_format"),
            ("enterprise_project_id", "enterprise_project_id"),
        ):
            if key in q and not (key == "enterprise_project_id" and q[key] == "all_granted_eps"):
                preds.append(_attr_equals(attr, q[key]))
        if "container_format" in q:
            preds.append(lambda i: q["container_format"] == "bare")
        if "virtual_env_type" in q:
            preds.append(lambda i: q["virtual_env_type"] == "FusionCompute")
        if "__isregistered" in q:
            preds.append(lambda i: q["__isregistered"].lower() == "true")
        if "member_status" in q:
            preds.append(lambda i: False)  # [inference] nothing is shared in the local cloud
        if "protected" in q:
            want = q["protected"].lower()
            if want not in ("true", "false"):
                raise ims_error("IMG.0001")
            preds.append(lambda i: i.protected == (want == "true"))
        for key in ("min_disk", "min_ram"):
            if key in q:
                try:
                    number = int(q[key])
                except ValueError:
                    raise ims_error("IMG.0001") from None
                preds.append(_attr_equals(key, str(number)))
        if "tag" in q:
            # The page (row "tag"): tags are queried as "tag=Key=Value", even those written "Key.Value".
            # Tags are stored "key.value", so tag=a=b matches the stored "a.b".
            key, eq, value = q["tag"].partition("=")
            if not eq or not key:
                # [inference] a value without "=" (the old "Key.Value" spelling, or a bare key) is not a
                # tag query: 400 IMG.0001 "The request message format is invalid.", not an empty list.
                raise ims_error("IMG.0001")
            wanted = f"{key}.{value}"
            preds.append(lambda i: wanted in i.tags)
        if "created_at" in q:
            created = _time_filter(q["created_at"])
            preds.append(lambda i: created(i.created_at))
        if "updated_at" in q:
            updated = _time_filter(q["updated_at"])
            preds.append(lambda i: updated(i.updated_at))

        sort_key = q.get("sort_key", "created_at")
        sort_dir = q.get("sort_dir", "desc")
        if sort_key not in SORT_KEYS or sort_dir not in ("asc", "desc"):
            raise ims_error("IMG.0001")
        try:
            limit = int(q.get("limit", "500"))
        except ValueError:
            raise ims_error("IMG.0001") from None
        if limit < 0:
            raise ims_error("IMG.0001")

        matched = [
            i for i in self.images.values() if self._visible(i, project_id) and all(p(i) for p in preds)
        ]

        def sort_value(i: Image) -> tuple[Any, int]:
            value: Any = {
                "name": i.name,
                "container_format": "bare",
                "disk_format": i.disk_format,
                "status": i.status,
                "id": i.id,
                "size": 0,
                "created_at": i.created_at,
            }[sort_key]
            return value, i.seq

        matched.sort(key=sort_value, reverse=sort_dir == "desc")
        marker = q.get("marker")
        if marker:
            ids = [i.id for i in matched]
            if marker not in ids:
                # [inference] an unknown marker is a bad request, as in Glance.
                raise ims_error("IMG.0066")
            matched = matched[ids.index(marker) + 1 :]
        return {"images": [self.image_body(i) for i in matched[:limit]]}

    def delete_image(self, project_id: str, image_id: str, raw: bytes = b"") -> None:
        """``DELETE /v2/images/{image_id}`` -> 204, or the documented refusals.

        The optional body is ``{"delete_backup": <bool>}`` (the page's only request parameter).
        [inference] Any other body (not a JSON object, another field, a non-boolean) is IMG.0001.
        """
        self.settle()
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise ims_error("IMG.0001") from None
            if (
                not isinstance(body, dict)
                or set(body) - {"delete_backup"}
                or not isinstance(body.get("delete_backup", False), bool)
            ):
                raise ims_error("IMG.0001")
        image = self.get_visible(project_id, image_id)
        if image.visibility == "public":
            raise ims_error("IMG.0094")
        if image.owner != project_id:
            raise ims_error("IMG.0092")
        if image.protected:
            raise ims_error("IMG.0028")
        if image.status in ("queued", "saving"):
            raise ims_error("IMG.0090")
        if image_id in self._image_export:
            raise ims_error("IMG.0148")  # [inference] "The image is being exported."
        del self.images[image_id]
        if image.imagetype == "private":
            self._private_count[project_id] -= 1

    # ---- export ---------------------------------------------------------------------------------------

    def export_image(self, project_id: str, image_id: str, raw: bytes, fault: JobFault | None = None) -> str:
        """``POST /v1/cloudimages/{image_id}/file`` -> job id (``imsNativeExportImageJob``)."""
        self.settle()
        image = self.get_visible(project_id, image_id)
        body = _parse_json_body(raw)
        if set(body) - EXPORT_FIELDS:
            raise ims_error("IMG.0001")  # [inference] an undocumented field (see EXPORT_FIELDS)
        if image.visibility == "public":
            raise ims_error("IMG.0077")
        if image.owner != project_id:
            raise ims_error("IMG.0047")
        bucket_url = body.get("bucket_url")
        if bucket_url is None or bucket_url == "":
            raise ims_error("IMG.0068")
        if not isinstance(bucket_url, str):
            raise ims_error("IMG.0001")
        bucket, _, file_name = bucket_url.partition(":")
        if not bucket:
            raise ims_error("IMG.0068")
        if not BUCKET_CHARS.match(bucket):
            raise ims_error("IMG.0109")
        if not file_name:
            raise ims_error("IMG.0073")
        if len(file_name) > 1024:
            raise ims_error("IMG.0074")  # [inference] OBS object keys are at most 1024 characters
        quick = body.get("is_quick_export", False)
        if not isinstance(quick, bool):
            raise ims_error("IMG.0001")
        file_format = body.get("file_format")
        if quick:
            if file_format is not None:
                # "If fast export is enabled, file_format cannot be specified." [inference] IMG.0001.
                raise ims_error("IMG.0001")
            file_format = "zvhd2"
        elif file_format not in EXPORT_FORMATS:
            raise ims_error("IMG.0072")
        assert isinstance(file_format, str)
        if image.status != "active":
            raise ims_error("IMG.0046")
        if image_id in self._image_export:
            raise ims_error("IMG.0148")

        now = self.clock.now()
        fault = fault or JobFault()
        error_code: str | None = None
        if bucket not in self.buckets:
            error_code = "IMG.0069"  # the job fails: "The specified bucket cannot be accessed."
        elif file_name in self.buckets[bucket]:
            error_code = "IMG.0070"
        elif fault.fail:
            error_code = fault.error_code or "IMG.0071"
        init = self.timing.job_init_seconds
        if error_code and not fault.fail:
            lifecycle = Lifecycle.of(("INIT", init), ("FAIL", None))
        else:
            run = None if fault.stuck else self.duration(self.timing.export_job_seconds)
            lifecycle = Lifecycle.of(
                ("INIT", init), ("RUNNING", run), ("FAIL" if error_code else "SUCCESS", None)
            )
        job = ImsJob(
            id=secrets.token_hex(16),
            project_id=project_id,
            job_type=JOB_EXPORT,
            timeline=Timeline(lifecycle, now),
            image_id=image.id,
            image_name=image.name,
            export=ExportTarget(bucket, file_name, file_format, quick),
        )
        if error_code:
            job.error_code = error_code
            default_reason = ims_error(error_code).body["error"]["message"]  # type: ignore[index]
            job.fail_reason = (fault.fail_reason if fault.fail else None) or default_reason
        self._track(job)
        self._image_export[image.id] = job.id
        return job.id

    # ---- quota ----------------------------------------------------------------------------------------

    def quota(self, project_id: str) -> dict[str, Any]:
        return {
            "quotas": {
                "resources": [
                    {
                        "type": "image",
                        "used": self.private_image_count(project_id),
                        "quota": self.limits.image_quota,
                        "min": 1,
                        "max": 1000,
                    }
                ]
            }
        }


__all__ = ["JOB_CREATE", "JOB_EXPORT", "CloudError", "Image", "Ims", "ImsJob"]
