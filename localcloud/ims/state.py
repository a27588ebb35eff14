"""IMS state and rules: images, image jobs (create from ECS, export), the emulated OBS buckets.

No HTTP here: ``wire.py`` reads the requests (and checks their fields) and writes the bodies.

An image created from an ECS shows up at once as ``queued`` (job INIT), then ``saving`` (job RUNNING), then
``active`` (job SUCCESS) or ``killed`` (job FAIL) — all computed from the job's timeline and the clock.
Data-disk images (``data_images``, never with ``instance_id``: the page's "You cannot specify instance_id")
are made by one job per request: every image of it follows that one job, so they become ``active`` (or
``killed``) together. A system-disk image and data-disk images of one ECS are two requests, one after the
other: while one runs, the ECS has a task in progress (``IMG.0010``).
"""

from __future__ import annotations

import heapq
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from localcloud.clock import Clock, fmt_seconds
from localcloud.ecs.state import ImageJobsByServer, Server, Volume
from localcloud.errors import ims_error
from localcloud.faults import JobFault
from localcloud.lifecycle import Lifecycle, Timeline
from localcloud.seed import Durations, ImageSeed, Seed, stable_hex, stable_uuid

JOB_CREATE = "imsCreateImageByInstance"
# The job page: "imsVolumesToSysDataImagesJob: Creating a data disk image from a data disk", reporting one
# sub-job per image (its example: sub-job type "imsCopyVolumeToImageJob", entities image_name/image_id).
JOB_VOLUMES = "imsVolumesToSysDataImagesJob"
SUB_JOB_VOLUME = "imsCopyVolumeToImageJob"
# The job page: "imsCreateWholeImageByInstanceJob: Creating a full-ECS image from an ECS"; its entities carry
# image_id and image_name (Table 2), as a create job's.
JOB_WHOLE = "imsCreateWholeImageByInstanceJob"
CREATE_JOBS = (JOB_CREATE, JOB_VOLUMES, JOB_WHOLE)
JOB_EXPORT = "imsNativeExportImageJob"
# The job page's job types for sharing (adding_image_sharing_members.rst and its siblings answer a job_id).
JOB_ADD_MEMBERS = "imsAddImageMembersJob"
JOB_DEL_MEMBERS = "imsDelImageMembersJob"
JOB_UPDATE_MEMBERS = "imsUpdateImageMembersJob"
MEMBER_JOBS = (JOB_ADD_MEMBERS, JOB_DEL_MEMBERS, JOB_UPDATE_MEMBERS)
MEMBER_STATUSES = ("accepted", "rejected", "pending")
# The job page's job type for replicating_an_image_within_a_region.rst (Table 2 lists it among the job types
# whose entities carry image_id).
JOB_COPY = "imsCopyImageInRegionJob"
# virtual_env_type of an image made from an ISO file (querying_images.rst): "Private images created using ISO
# files do not support in-region replication."
ENV_ISO = "IsoImage"
# virtual_env_type (image attributes page): "FusionCompute" for an ECS (system disk) image, "DataImage" for
# a data disk image.
ENV_SYSTEM = "FusionCompute"
ENV_DATA = "DataImage"
IMAGE_STATUS_BY_JOB = {"INIT": "queued", "RUNNING": "saving", "SUCCESS": "active", "FAIL": "killed"}
PUBLIC_OWNER = stable_hex("public-images-owner")
SORT_KEYS = ("name", "container_format", "disk_format", "status", "id", "size", "created_at")


@dataclass
class ExportTarget:
    bucket: str
    file: str
    file_format: str
    quick: bool


@dataclass(frozen=True)
class DataImageSpec:
    """One member of ``data_images`` (creating_an_image.rst, Table 1), checked by the wire.

    ``tags`` are ``key.value`` strings, as for the image itself.
    """

    name: str
    volume_id: str
    description: str = ""
    tags: tuple[str, ...] = ()


@dataclass
class Member:
    """A project an image is shared with (querying_image_sharing_members_native_openstack_api.rst, Table 2).

    ``status`` is ``pending`` until the member accepts or rejects (querying_images.rst, ``member_status``).
    """

    project_id: str
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MemberChange:
    """What a sharing job does when it succeeds: ``op`` is ``add``, ``delete`` or ``update``."""

    op: str
    images: tuple[str, ...]
    projects: tuple[str, ...]
    status: str | None = None  # update: accepted | rejected


@dataclass(frozen=True)
class ImsSubJob:
    """One image of an ``imsVolumesToSysDataImagesJob``: its own job id, the image it makes.

    [inference] A sub-job follows its parent's timeline (it starts when the parent leaves INIT and ends with
    it); the page's example shows a sub-job beginning shortly after its parent and ending with it.
    """

    id: str
    image_id: str
    image_name: str


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
    # imsVolumesToSysDataImagesJob: one per image, the system-disk image (if any) first. image_id and
    # image_name above then name the set's first image (the wire does not show them for this job type).
    sub_jobs: list[ImsSubJob] = field(default_factory=list)
    members: MemberChange | None = None  # a sharing job: the change it applies on SUCCESS

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
    virtual_env_type: str = ENV_SYSTEM
    volume_id: str | None = None  # a data-disk image: the volume it was made from
    members: dict[str, Member] = field(default_factory=dict, repr=False)  # project id -> member
    # ``__whole_image`` (image_attributes.rst): a full-ECS image, the system disk and every data disk of an
    # ECS as one image. Replication (replicating_an_image_within_a_region.rst): the KMS key the image is
    # encrypted with (``__system__cmkid``; None: not encrypted) and the image a copy was made from (None: not
    # a copy).
    whole_image: bool = False
    cmk_id: str | None = None
    copied_from: str | None = None

    def imagetype_for(self, project_id: str) -> str:
        """``__imagetype`` as ``project_id`` sees it. querying_images.rst: "The __imagetype of images you
        share with other tenants or those other tenants share with you and you have accepted is shared"."""
        if project_id != self.owner and project_id in self.members:
            return "shared"
        if self.imagetype == "private" and self.members:
            return "shared"
        return self.imagetype

    def visibility_for(self, project_id: str) -> str:
        """[inference] ``shared`` for a member (the page filters shared images with ``visibility=shared``);
        the owner still sees its own visibility (``private``)."""
        if project_id != self.owner and project_id in self.members:
            return "shared"
        return self.visibility

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


@dataclass(frozen=True)
class ImageQuota:
    used: int
    quota: int


TIME_OPERATORS: dict[str, Callable[[datetime, datetime], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}


@dataclass(frozen=True)
class TimeBound:
    """A ``created_at`` / ``updated_at`` filter: ``op`` (a :data:`TIME_OPERATORS` key) against ``bound``."""

    op: str
    bound: datetime

    def matches(self, t: datetime) -> bool:
        return TIME_OPERATORS[self.op](t.replace(microsecond=0), self.bound)


@dataclass(frozen=True)
class ImageFilters:
    """The filters of ``GET /v2/cloudimages`` (querying_images.rst, Table 1); None: not filtered."""

    imagetype: str | None = None  # "gold" | "private" | "shared"
    name: str | None = None
    id: str | None = None
    status: str | None = None
    owner: str | None = None
    visibility: str | None = None
    os_type: str | None = None
    platform: str | None = None
    disk_format: str | None = None
    enterprise_project_id: str | None = None
    virtual_env_type: str | None = None
    protected: bool | None = None
    min_disk: int | None = None
    min_ram: int | None = None
    tag: tuple[str, str] | None = None  # (key, value)
    created_at: TimeBound | None = None
    updated_at: TimeBound | None = None
    member_status: str | None = None  # "accepted" | "rejected" | "pending": images shared with the viewer
    # A filter on a value no local image has (the wire knows which: the values every image body shows).
    matches_nothing: bool = False
    whole_image: bool | None = None  # __whole_image: full-ECS images only (true) or none of them (false)

    def matches(self, image: Image, viewer: str | None = None) -> bool:
        if self.matches_nothing:
            return False
        if viewer is not None:
            if self.imagetype is not None and image.imagetype_for(viewer) != self.imagetype:
                return False
            if self.visibility is not None and image.visibility_for(viewer) != self.visibility:
                return False
        for attr in (
            *(("imagetype", "visibility") if viewer is None else ()),
            "name",
            "id",
            "status",
            "owner",
            "os_type",
            "platform",
            "disk_format",
            "enterprise_project_id",
            "virtual_env_type",
            "protected",
            "min_disk",
            "min_ram",
        ):
            wanted = getattr(self, attr)
            if wanted is not None and getattr(image, attr) != wanted:
                return False
        # Tags are stored "key.value", so the query tag=a=b matches the stored "a.b".
        if self.tag is not None and f"{self.tag[0]}.{self.tag[1]}" not in image.tags:
            return False
        if self.created_at is not None and not self.created_at.matches(image.created_at):
            return False
        if self.whole_image is not None and image.whole_image != self.whole_image:
            return False
        return self.updated_at is None or self.updated_at.matches(image.updated_at)


class ServerLookup(Protocol):
    """What IMS asks ECS: the server an image is created from (None: no such server in the project), and the
    server a volume is attached to."""

    def find(self, project_id: str, server_id: str) -> Server | None: ...

    def find_volume(self, project_id: str, volume_id: str) -> tuple[Server, Volume] | None: ...


class Ims:
    """The image management service of the local cloud (with the OBS buckets it exports into).

    One method per API operation; arguments arrive checked by ``wire.py`` (the page's field rules).
    """

    def __init__(
        self,
        seed: Seed,
        clock: Clock,
        project_ids: Callable[[str], str | None],
        *,
        servers: ServerLookup,
        image_jobs: ImageJobsByServer,
        durations: Durations,
    ) -> None:
        self.clock = clock
        self.project_ids = project_ids
        self.servers = servers
        self.image_jobs = image_jobs
        self.durations = durations
        self.timing = seed.timing
        self.limits = seed.limits
        self.images: dict[str, Image] = {}
        self.jobs: dict[str, ImsJob] = {}
        # project id -> the CBR vaults seeded for it (full-ECS images name one: vault_id).
        self.vaults: dict[str, set[str]] = {}
        for vault in seed.vaults:
            owner = project_ids(vault.project)
            if owner is not None:
                self.vaults.setdefault(owner, set()).add(vault.id)
        self.buckets: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in seed.buckets}
        self._seq = 0
        # Jobs not settled yet, and a heap of (end time, job id) for those that will end: settling pops only
        # what has ended, so a fleet of running jobs costs O(log n) per request, not O(n).
        self._pending: set[str] = set()
        self._ends: list[tuple[datetime, int, str]] = []
        self._running_creates: Counter[str] = Counter()  # project -> create-image jobs not ended
        self._private_count: Counter[str] = Counter()  # project -> private images
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
        if job.job_type in CREATE_JOBS:
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
            if job.job_type in CREATE_JOBS:
                self._running_creates[job.project_id] -= 1
            if job.members is not None and status == "SUCCESS" and not job.applied:
                self._apply_members(job.members, job.project_id, job.end_time(now) or now)
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
        return self.image_jobs.running(instance_id)

    def running_image_jobs(self, project_id: str) -> int:
        """Create-image jobs of ``project_id`` in INIT or RUNNING (stuck ones included)."""
        self.settle()
        return self._running_creates[project_id]

    # ---- create image from an ECS ---------------------------------------------------------------------

    def create_image(
        self,
        project_id: str,
        *,
        name: str,
        instance_id: str,
        description: str = "",
        tags: Sequence[str] = (),
        min_ram: int = 0,
        max_ram: int | None = None,
        enterprise_project_id: str = "0",
        fault: JobFault | None = None,
    ) -> ImsJob:
        """``POST /v2/cloudimages/action``: a system-disk image from a stopped ECS; ``tags`` as ``key.value``.

        Data-disk images are another request (:meth:`create_data_images`): the page's note on ``data_images``
        says "You cannot specify instance_id" (the wire refuses the two together).

        [inference] Validation order: the fields (wire.py), then the ECS (exists, no task in progress,
        stopped), name uniqueness (if switched on), quota, concurrent-job cap.
        """
        server = self.servers.find(project_id, instance_id)
        if server is None:
            raise ims_error("IMG.0005")
        self._check_create(project_id, server, [name])

        fault = fault or JobFault()
        job = self._new_create_job(project_id, JOB_CREATE, server, fault)
        image = self._add_created_image(
            job,
            server,
            name=name,
            description=description,
            tags=tags,
            min_disk=server.system_disk_gb,
            min_ram=min_ram,
            max_ram=max_ram,
            enterprise_project_id=enterprise_project_id,
        )
        job.image_id, job.image_name = image.id, image.name
        return self._submit(job, server)

    def create_data_images(
        self,
        project_id: str,
        *,
        data_images: Sequence[DataImageSpec],
        enterprise_project_id: str = "0",
        fault: JobFault | None = None,
    ) -> ImsJob:
        """``POST /v2/cloudimages/action`` with ``data_images`` and no ``instance_id``: data-disk images only.

        The page: "When you create a data disk image using a data disk ... You cannot specify instance_id."
        The volumes must be data disks of one ECS (``IMG.0140`` otherwise); [inference] that ECS must meet
        the same conditions as for an ECS image (no task in progress, stopped).
        """
        if not data_images:
            raise ims_error("IMG.0012")  # neither an ECS nor a data disk: nothing to make an image from
        server, volumes = self._owner_and_volumes(project_id, data_images)
        self._check_create(project_id, server, [d.name for d in data_images])
        job = self._new_create_job(project_id, JOB_VOLUMES, server, fault or JobFault())
        self._add_data_images(job, server, data_images, volumes, enterprise_project_id)
        job.image_id, job.image_name = job.sub_jobs[0].image_id, job.sub_jobs[0].image_name
        return self._submit(job, server)

    def create_whole_image(
        self,
        project_id: str,
        *,
        name: str,
        instance_id: str,
        vault_id: str,
        description: str = "",
        tags: Sequence[str] = (),
        min_ram: int = 0,
        max_ram: int | None = None,
        enterprise_project_id: str = "0",
        fault: JobFault | None = None,
    ) -> ImsJob:
        """``POST /v1/cloudimages/wholeimages/action`` from an ECS: one full-ECS image (its system disk and
        every data disk), made by an ``imsCreateWholeImageByInstanceJob``; ``tags`` as ``key.value``.

        The page's constraints for this form ask for a properly configured ECS, not a stopped one: a running
        ECS is taken as it is (the ECS is backed up into ``vault_id``, then the image is made of the backup).
        [inference] ``vault_id`` must name a vault of the project (seeded: CBR is not emulated), else
        IMG.0188 "Vault is unavailable."; an ECS with a power operation in progress: IMG.0126 "The VM in the
        current stage cannot be used to create a full-ECS image."; one with an image job running (being
        backed up): IMG.0136. Then name uniqueness, the quota (one image) and the job cap, as for an image.
        """
        server = self.servers.find(project_id, instance_id)
        if server is None:
            raise ims_error("IMG.0005")
        if vault_id not in self.vaults.get(project_id, set()):
            raise ims_error("IMG.0188")
        if server.busy:
            raise ims_error("IMG.0126")
        if self.image_job_running(server.id):
            raise ims_error("IMG.0136")
        self._check_room(project_id, [name])
        job = self._new_create_job(project_id, JOB_WHOLE, server, fault or JobFault())
        image = self._add_created_image(
            job,
            server,
            name=name,
            description=description,
            tags=tags,
            min_disk=server.system_disk_gb,
            min_ram=min_ram,
            max_ram=max_ram,
            enterprise_project_id=enterprise_project_id,
        )
        image.whole_image = True
        # [inference] a plausible size: a quarter of every disk of the ECS is used.
        disks_gb = server.system_disk_gb + sum(v.size_gb for v in server.data_volumes)
        image.image_size = disks_gb * 1024**3 // 4
        job.image_id, job.image_name = image.id, image.name
        return self._submit(job, server)

    def _check_room(self, project_id: str, names: Sequence[str]) -> None:
        """Name uniqueness (if switched on), the quota and the job cap for ``len(names)`` new images: the
        checks of :meth:`_check_create` after the ECS's state (a full-ECS image needs no stopped ECS)."""
        if self.limits.unique_image_names and any(
            i.name in names and i.owner == project_id for i in self.images.values()
        ):
            raise ims_error("IMG.0009")
        # [inference] The whole set must fit in the quota: every image of it is a private image.
        if self.private_image_count(project_id) + len(names) > self.limits.image_quota:
            raise ims_error("IMG.0015")
        if self.running_image_jobs(project_id) >= self.limits.max_running_image_jobs:
            raise ims_error("IMG.0060")

    def _owner_and_volumes(
        self, project_id: str, specs: Sequence[DataImageSpec]
    ) -> tuple[Server, list[Volume]]:
        """The data disks ``specs`` name and the one ECS they are attached to.

        IMG.0120 "The specified data disk ID is unavailable." for a volume unknown in the project, a system
        disk, or a volume named twice [inference: which code]; IMG.0140 "The disks in the request come from
        different ECSs." for a data disk of another ECS than the other volumes.
        """
        volumes: list[Volume] = []
        owner: Server | None = None
        for spec in specs:
            found = self.servers.find_volume(project_id, spec.volume_id)
            if found is None or found[1].is_system or any(v.id == spec.volume_id for v in volumes):
                raise ims_error("IMG.0120")
            server, volume = found
            if owner is None:
                owner = server
            elif server.id != owner.id:
                raise ims_error("IMG.0140")
            volumes.append(volume)
        assert owner is not None  # specs is not empty
        return owner, volumes

    def _check_create(self, project_id: str, server: Server, names: Sequence[str]) -> None:
        """The ECS's state, names, quota and the job cap, for a set of ``len(names)`` new images."""
        if server.busy or self.image_job_running(server.id):
            raise ims_error("IMG.0010")
        if server.status != "SHUTOFF":
            # The seed dev guide: "Before creating an image, ensure that the ECS is stopped."
            raise ims_error("IMG.0008")
        self._check_room(project_id, names)

    def _new_create_job(self, project_id: str, job_type: str, server: Server, fault: JobFault) -> ImsJob:
        now = self.clock.now()
        run = None if fault.stuck else self.durations(self.timing.image_job_seconds)
        outcome = "FAIL" if fault.fail else "SUCCESS"
        timeline = Timeline(
            Lifecycle.of(("INIT", self.timing.job_init_seconds), ("RUNNING", run), (outcome, None)), now
        )
        job = ImsJob(
            id=secrets.token_hex(16),
            project_id=project_id,
            job_type=job_type,
            timeline=timeline,
            image_id="",
            image_name="",
            instance_id=server.id,
        )
        if fault.fail:
            job.error_code = fault.error_code or "IMG.0014"
            job.fail_reason = fault.fail_reason or ims_error(job.error_code).body["error"]["message"]  # type: ignore[index]
        return job

    def _add_created_image(
        self,
        job: ImsJob,
        server: Server,
        *,
        name: str,
        description: str,
        tags: Sequence[str],
        min_disk: int,
        min_ram: int = 0,
        max_ram: int | None = None,
        enterprise_project_id: str = "0",
        volume: Volume | None = None,
    ) -> Image:
        """A private image made by ``job`` (queued now; its status follows the job)."""
        now = self.clock.now()
        image_id = str(uuid.uuid4())
        self.images[image_id] = image = Image(
            id=image_id,
            name=name,
            owner=job.project_id,
            visibility="private",
            imagetype="private",
            tags=list(tags),
            description=description,
            min_disk=min_disk,
            min_ram=min_ram,
            max_ram=max_ram,
            # [inference] A data disk carries no OS of its own: the ECS's OS type (the page requires a data
            # image's OS type to match its system image's for file imports), no version, platform "Other".
            os_version=server.os_version if volume is None else "",
            os_type=server.os_type,
            platform=server.platform if volume is None else "Other",
            protected=False,
            disk_format="zvhd2",
            # [inference] a plausible size: a quarter of the disk is used.
            image_size=min_disk * 1024**3 // 4,
            instance_id=server.id,
            # The parent image: the ECS's image for its system disk; [inference] none for a data disk.
            original_image_id=server.image_id if volume is None else "",
            created_at=now,
            base_status="queued",
            base_updated_at=now,
            seq=self._next_seq(),
            clock=self.clock,
            enterprise_project_id=enterprise_project_id or "0",
            job=job,
            virtual_env_type=ENV_SYSTEM if volume is None else ENV_DATA,
            volume_id=None if volume is None else volume.id,
        )
        self._private_count[job.project_id] += 1
        return image

    def _add_data_images(
        self,
        job: ImsJob,
        server: Server,
        specs: Sequence[DataImageSpec],
        volumes: Sequence[Volume],
        enterprise_project_id: str,
    ) -> None:
        for spec, volume in zip(specs, volumes, strict=True):
            image = self._add_created_image(
                job,
                server,
                name=spec.name,
                description=spec.description,
                tags=spec.tags,
                min_disk=volume.size_gb,
                enterprise_project_id=enterprise_project_id,
                volume=volume,
            )
            job.sub_jobs.append(ImsSubJob(secrets.token_hex(16), image.id, image.name))

    def _submit(self, job: ImsJob, server: Server) -> ImsJob:
        self._track(job)
        self.image_jobs.started(server.id, job.timeline)
        return job

    def private_image_count(self, project_id: str) -> int:
        return self._private_count[project_id]

    # ---- jobs -----------------------------------------------------------------------------------------

    def show_job(self, project_id: str, job_id: str) -> ImsJob:
        """``GET /v1/{project_id}/jobs/{job_id}`` (IMS) and ``GET /v1/cloudimages/job/{job_id}``."""
        self.settle()
        job = self.jobs.get(job_id)
        if job is None or job.project_id != project_id:
            # [inference] The job page lists 400/401/403/500/503 (no 404); IMG.0023 "An exception occurred
            # during task query." is the query error. The same for an unknown or another project's job,
            # and on the ShowJobProgress path.
            raise ims_error("IMG.0023")
        return job

    # ---- images ---------------------------------------------------------------------------------------

    def _visible(self, image: Image, project_id: str) -> bool:
        """Own, public, or shared with ``project_id`` (whatever its member status: a rejected image "is not
        displayed in the image list. However, you can still use the image to create ECSs")."""
        return image.owner == project_id or image.visibility == "public" or project_id in image.members

    def _listed(self, image: Image, project_id: str, member_status: str | None) -> bool:
        """In ``project_id``'s image list: own and public images; an image shared with it when its member
        status is ``member_status`` (default ``accepted``: "After an image is accepted, the image is displayed
        in the image list"; querying_images.rst lists rejected and pending ones by ``member_status``)."""
        member = image.members.get(project_id)
        if image.owner != project_id and member is not None:
            return member.status == (member_status or "accepted")
        if member_status is not None:
            return False  # [inference] member_status filters images shared with the caller only
        return self._visible(image, project_id)

    def get_visible(self, project_id: str, image_id: str) -> Image:
        image = self.images.get(image_id)
        if image is None or not self._visible(image, project_id):
            # The Glance-native pages list 404 "The requested resource was not found." (no body documented).
            # [inference] The body: IMS's shape with IMG.0144 "The image does not exist.", HTTP 404.
            raise ims_error("IMG.0144", status=404)
        return image

    def show_image(self, project_id: str, image_id: str) -> Image:
        """``GET /v2/images/{image_id}``: an own or a public image."""
        self.settle()
        return self.get_visible(project_id, image_id)

    def list_images(
        self,
        project_id: str,
        filters: ImageFilters | None = None,
        *,
        sort_key: str = "created_at",
        sort_dir: str = "desc",
        marker: str | None = None,
        limit: int = 500,
    ) -> list[Image]:
        """``GET /v2/cloudimages``: own and public images, filtered, sorted, paged (contract §3.3)."""
        self.settle()
        filters = filters or ImageFilters()
        matched = [
            i
            for i in self.images.values()
            if self._listed(i, project_id, filters.member_status) and filters.matches(i, project_id)
        ]

        def sort_value(i: Image) -> tuple[Any, int]:
            value: Any = {
                "name": i.name,
                "container_format": "bare",  # every local image (wire.image_body)
                "disk_format": i.disk_format,
                "status": i.status,
                "id": i.id,
                "size": 0,  # every local image (wire.image_body)
                "created_at": i.created_at,
            }[sort_key]
            return value, i.seq

        matched.sort(key=sort_value, reverse=sort_dir == "desc")
        if marker:
            ids = [i.id for i in matched]
            if marker not in ids:
                # [inference] an unknown marker is a bad request, as in Glance.
                raise ims_error("IMG.0066")
            matched = matched[ids.index(marker) + 1 :]
        return matched[:limit]

    def delete_image(self, project_id: str, image_id: str, *, delete_backup: bool = False) -> None:
        """``DELETE /v2/images/{image_id}``, or the documented refusals (no backups here to delete)."""
        self.settle()
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

    def check_exportable(self, project_id: str, image_id: str) -> Image:
        """An image of this project's own (not public): what may be exported."""
        image = self.get_visible(project_id, image_id)
        if image.visibility == "public":
            raise ims_error("IMG.0077")
        if image.owner != project_id:
            raise ims_error("IMG.0047")
        if image.whole_image:
            # exporting_an_image.rst: "The following private images cannot be exported: Full-ECS images".
            raise ims_error("IMG.0128")
        return image

    def export_image(
        self,
        project_id: str,
        image_id: str,
        *,
        bucket: str,
        file: str,
        file_format: str,
        quick: bool = False,
        fault: JobFault | None = None,
    ) -> ImsJob:
        """``POST /v1/cloudimages/{image_id}/file``: an ``imsNativeExportImageJob`` writing ``bucket:file``.

        A missing bucket or an existing file fails in the job (the request itself is accepted).
        """
        self.settle()
        image = self.check_exportable(project_id, image_id)
        if image.status != "active":
            raise ims_error("IMG.0046")
        if image_id in self._image_export:
            raise ims_error("IMG.0148")

        now = self.clock.now()
        fault = fault or JobFault()
        error_code: str | None = None
        if bucket not in self.buckets:
            error_code = "IMG.0069"  # the job fails: "The specified bucket cannot be accessed."
        elif file in self.buckets[bucket]:
            error_code = "IMG.0070"
        elif fault.fail:
            error_code = fault.error_code or "IMG.0071"
        init = self.timing.job_init_seconds
        if error_code and not fault.fail:
            lifecycle = Lifecycle.of(("INIT", init), ("FAIL", None))
        else:
            run = None if fault.stuck else self.durations(self.timing.export_job_seconds)
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
            export=ExportTarget(bucket, file, file_format, quick),
        )
        if error_code:
            job.error_code = error_code
            default_reason = ims_error(error_code).body["error"]["message"]  # type: ignore[index]
            job.fail_reason = (fault.fail_reason if fault.fail else None) or default_reason
        self._track(job)
        self._image_export[image.id] = job.id
        return job

    # ---- sharing ---------------------------------------------------------------------------------------

    def list_members(self, project_id: str, image_id: str) -> list[Member]:
        """``GET /v2/images/{image_id}/members``: the owner sees every member; [inference] a member sees only
        itself (as in Glance); anyone else gets the image's 404."""
        self.settle()
        image = self.get_visible(project_id, image_id)
        if image.owner == project_id:
            return sorted(image.members.values(), key=lambda m: m.created_at)
        member = image.members.get(project_id)
        return [member] if member is not None else []

    def _own_shareable(self, project_id: str, image_id: str) -> Image:
        """An image ``project_id`` may share or stop sharing.

        [inference: the codes] an unknown image: IMG.0027 "The image ID in the request does not exist." (the
        body names several images); a public image: IMG.0089; another tenant's: IMG.0106 "The image owner is
        another tenant."; not active: IMG.0046 "The image is unavailable.".
        """
        image = self.images.get(image_id)
        if image is None or not self._visible(image, project_id):
            raise ims_error("IMG.0027")
        if image.visibility == "public":
            raise ims_error("IMG.0089")
        if image.owner != project_id:
            raise ims_error("IMG.0106")
        if image.status != "active":
            raise ims_error("IMG.0046")
        return image

    def add_members(
        self,
        project_id: str,
        images: Sequence[str],
        projects: Sequence[str],
        *,
        fault: JobFault | None = None,
    ) -> ImsJob:
        """``POST /v1/cloudimages/members``: an ``imsAddImageMembersJob``; the projects become ``pending``
        members of every image when it succeeds.

        Refused at once: an image as in :meth:`_own_shareable`; IMG.0076 for the caller's own project;
        IMG.0108 for a project ID IAM does not know; IMG.0088 when an image would have more members than the
        limit (restrictions_on_image_sharing.rst: 256 tenants) [inference: the code]. [inference] A project
        that already is a member of one of the images makes the job FAIL with IMG.0112 "Failed to add the
        tenant." (the page says nothing; Glance refuses an existing member).
        """
        self.settle()
        shared = [self._own_shareable(project_id, i) for i in images]
        if any(image.whole_image for image in shared):
            # restrictions_on_image_sharing.rst: "Only full-ECS images created from CBR backups can be
            # shared. Full-ECS images created using other methods cannot be shared." The local cloud makes
            # them from an ECS only: IMG.0135 "The full-ECS image cannot be shared." (the error-code page).
            raise ims_error("IMG.0135")
        for p in projects:
            if p == project_id:
                raise ims_error("IMG.0076")
            if self.project_ids(p) != p:
                raise ims_error("IMG.0108")
        new = set(projects)
        for image in shared:
            if len(set(image.members) | new) > self.limits.max_image_members:
                raise ims_error("IMG.0088")
        error = "IMG.0112" if any(p in image.members for image in shared for p in projects) else None
        change = MemberChange("add", tuple(images), tuple(projects))
        return self._member_job(project_id, JOB_ADD_MEMBERS, change, error, fault)

    def delete_members(
        self,
        project_id: str,
        images: Sequence[str],
        projects: Sequence[str],
        *,
        fault: JobFault | None = None,
    ) -> ImsJob:
        """``DELETE /v1/cloudimages/members``: an ``imsDelImageMembersJob``; the projects stop being members
        when it succeeds. Refused at once as :meth:`add_members` for the images; [inference] a project that is
        not a member of one of the images makes the job FAIL with IMG.0113 "Failed to delete the tenant."."""
        self.settle()
        shared = [self._own_shareable(project_id, i) for i in images]
        error = "IMG.0113" if any(p not in image.members for image in shared for p in projects) else None
        change = MemberChange("delete", tuple(images), tuple(projects))
        return self._member_job(project_id, JOB_DEL_MEMBERS, change, error, fault)

    def update_members(
        self,
        project_id: str,
        images: Sequence[str],
        member_project: str,
        status: str,
        *,
        fault: JobFault | None = None,
    ) -> ImsJob:
        """``PUT /v1/cloudimages/members``: the receiving project accepts or rejects; an
        ``imsUpdateImageMembersJob``.

        [inference: the codes] ``project_id`` other than the caller's: IMG.0067 "The project ID is
        incorrect."; an image that is not shared with the caller (unknown, its own, public): IMG.0027.
        """
        self.settle()
        if member_project != project_id:
            raise ims_error("IMG.0067")
        for image_id in images:
            image = self.images.get(image_id)
            if image is None or project_id not in image.members:
                raise ims_error("IMG.0027")
        change = MemberChange("update", tuple(images), (project_id,), status)
        return self._member_job(project_id, JOB_UPDATE_MEMBERS, change, None, fault)

    def _member_job(
        self, project_id: str, job_type: str, change: MemberChange, error: str | None, fault: JobFault | None
    ) -> ImsJob:
        """A sharing job: INIT, RUNNING, then SUCCESS (the change applied) or FAIL (``error``, or a fault)."""
        now = self.clock.now()
        fault = fault or JobFault()
        init = self.timing.job_init_seconds
        if error and not fault.fail:
            lifecycle = Lifecycle.of(("INIT", init), ("FAIL", None))
        else:
            error = error or ((fault.error_code or "IMG.0061") if fault.fail else None)
            run = None if fault.stuck else self.durations(self.timing.member_job_seconds)
            lifecycle = Lifecycle.of(("INIT", init), ("RUNNING", run), ("FAIL" if error else "SUCCESS", None))
        job = ImsJob(
            id=secrets.token_hex(16),
            project_id=project_id,
            job_type=job_type,
            timeline=Timeline(lifecycle, now),
            image_id=change.images[0] if change.images else "",
            image_name="",
            members=change,
        )
        if error:
            job.error_code = error
            default_reason = ims_error(error).body["error"]["message"]  # type: ignore[index]
            job.fail_reason = (fault.fail_reason if fault.fail else None) or default_reason
        self._track(job)
        return job

    def _apply_members(self, change: MemberChange, caller: str, when: datetime) -> None:
        for image_id in change.images:
            image = self.images.get(image_id)
            if image is None:
                continue  # deleted meanwhile
            for p in change.projects:
                if change.op == "add" and p not in image.members:
                    image.members[p] = Member(p, "pending", when, when)
                elif change.op == "delete":
                    image.members.pop(p, None)
                elif change.op == "update" and p in image.members:
                    image.members[p].status = change.status or "pending"
                    image.members[p].updated_at = when

    # ---- quota ----------------------------------------------------------------------------------------

    def show_quota(self, project_id: str) -> ImageQuota:
        """``GET /v1/cloudimages/quota``: private images used of the quota."""
        return ImageQuota(self.private_image_count(project_id), self.limits.image_quota)

    # ---- replication within a region ----------------------------------------------------------------------

    def copy_image(
        self,
        project_id: str,
        image_id: str,
        *,
        name: str,
        description: str = "",
        cmk_id: str | None = None,
        enterprise_project_id: str = "0",
        fault: JobFault | None = None,
    ) -> ImsJob:
        """``POST /v1/cloudimages/{image_id}/copy``: an ``imsCopyImageInRegionJob`` making a new private image
        (queued now, then saving, then active with the job's SUCCESS, as an image from an ECS).

        The copy keeps the source's OS, disk and size attributes; ``cmk_id`` encrypts it with that key
        (``__system__cmkid``), else it keeps the source's key; ``enterprise_project_id`` places it ("0" or
        blank: the default project). [inference] It carries no tags (the request has none) and names the
        source as its parent image (``__originalimagename``).

        Refused at once, the page's constraints first: a full-ECS image, IMG.0130 ("The full-ECS image cannot
        be exported or replicated."); an image made from an ISO file, IMG.0167 ("This operation cannot be
        performed for ISO images.") [inference: the code, the page gives none]. Then [inference: the rules
        and codes, from the error-code page's messages]: a public image, IMG.0105; a shared image the
        caller has not accepted, IMG.0196; a shared image encrypted with KMS, IMG.0197; an image not active,
        IMG.0046; ``cmk_id`` the source's own key, IMG.0096; the name taken (if names are unique), IMG.0009;
        the quota, IMG.0015.
        """
        self.settle()
        source = self.get_visible(project_id, image_id)
        if source.whole_image:
            raise ims_error("IMG.0130")
        if source.virtual_env_type == ENV_ISO:
            raise ims_error("IMG.0167")
        if source.visibility == "public":
            raise ims_error("IMG.0105")
        if source.owner != project_id:
            member = source.members.get(project_id)
            if member is None or member.status != "accepted":
                raise ims_error("IMG.0196")
            if source.cmk_id:
                raise ims_error("IMG.0197")
        if source.status != "active":
            raise ims_error("IMG.0046")
        if cmk_id and cmk_id == source.cmk_id:
            raise ims_error("IMG.0096")
        if self.limits.unique_image_names and any(
            i.name == name and i.owner == project_id for i in self.images.values()
        ):
            raise ims_error("IMG.0009")
        if self.private_image_count(project_id) + 1 > self.limits.image_quota:
            raise ims_error("IMG.0015")

        now = self.clock.now()
        fault = fault or JobFault()
        run = None if fault.stuck else self.durations(self.timing.image_job_seconds)
        outcome = "FAIL" if fault.fail else "SUCCESS"
        lifecycle = Lifecycle.of(("INIT", self.timing.job_init_seconds), ("RUNNING", run), (outcome, None))
        job = ImsJob(
            id=secrets.token_hex(16),
            project_id=project_id,
            job_type=JOB_COPY,
            timeline=Timeline(lifecycle, now),
            image_id="",
            image_name=name,
        )
        if fault.fail:
            error_code = fault.error_code or "IMG.0014"
            job.error_code = error_code
            job.fail_reason = fault.fail_reason or ims_error(error_code).body["error"]["message"]  # type: ignore[index]
        copy_id = str(uuid.uuid4())
        self.images[copy_id] = Image(
            id=copy_id,
            name=name,
            owner=project_id,
            visibility="private",
            imagetype="private",
            tags=[],
            description=description,
            min_disk=source.min_disk,
            min_ram=source.min_ram,
            max_ram=source.max_ram,
            os_version=source.os_version,
            os_type=source.os_type,
            platform=source.platform,
            protected=False,
            disk_format=source.disk_format,
            image_size=source.image_size,
            instance_id=None,
            original_image_id=source.id,
            created_at=now,
            base_status="queued",
            base_updated_at=now,
            seq=self._next_seq(),
            clock=self.clock,
            enterprise_project_id=enterprise_project_id or "0",
            job=job,
            virtual_env_type=source.virtual_env_type,
            volume_id=None,
            cmk_id=cmk_id or source.cmk_id,
            copied_from=source.id,
        )
        self._private_count[project_id] += 1
        job.image_id = copy_id
        self._track(job)
        return job

    # ---- tags ---------------------------------------------------------------------------------------------

    def update_image_tags(
        self, project_id: str, image_id: str, action: str, tags: Sequence[tuple[str, str | None]]
    ) -> None:
        """``POST /v2/{project_id}/images/{image_id}/tags/action``: ``create`` adds or overwrites the tags by
        key, ``delete`` removes them (a tag that is not there counts as deleted: the page's "idempotent").

        Refused: an unknown image, the image's 404 (the page lists 404 "Resource not found."); [inference: the
        code] another project's image, IMG.0047 "This operation can be performed only by the image owner.";
        more than the image's 10 tags after a ``create``, IMG.0116.
        """
        self.settle()
        image = self.get_visible(project_id, image_id)
        if image.owner != project_id:
            raise ims_error("IMG.0047")
        pairs = dict(tag.partition(".")[::2] for tag in image.tags)
        if action == "create":
            pairs.update((key, value or "") for key, value in tags)
            if len(pairs) > self.limits.max_image_tags:
                raise ims_error("IMG.0116")
        else:
            for key, wanted in tags:
                # [inference] a value, when given, must match: "key1:value1" deletes that tag only.
                if key in pairs and (wanted is None or pairs[key] == wanted):
                    del pairs[key]
        image.tags = [f"{k}.{v}" for k, v in pairs.items()]
