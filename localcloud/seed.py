"""Seed files: the initial state of a local cloud (YAML or JSON), as pydantic models."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEMO_SEED_PATH = Path(__file__).with_name("demo_seed.yaml")


class _Model(BaseModel):
    # Unknown keys are errors: a typo in a seed file should fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


def stable_hex(*parts: str) -> str:
    """A deterministic 32-hex id, so a reset seed gets the same ids every time."""
    return hashlib.md5("/".join(parts).encode(), usedforsecurity=False).hexdigest()


def stable_uuid(*parts: str) -> str:
    return str(uuid.UUID(stable_hex(*parts)))


class UserSeed(_Model):
    name: str
    password: str
    id: str | None = None
    enabled: bool = True


class ProjectSeed(_Model):
    id: str
    name: str


class AccessKeySeed(_Model):
    ak: str
    sk: str
    project: str | None = Field(default=None, description="project name or id the AK works in by default")
    user: str | None = Field(default=None, description="owning user name (default: the domain's first)")
    security_token: str | None = Field(
        default=None, description="if set, the AK is temporary and requests must carry X-Security-Token"
    )


class DomainSeed(_Model):
    name: str
    id: str | None = None
    users: list[UserSeed] = Field(default_factory=list)
    projects: list[ProjectSeed] = Field(default_factory=list)
    access_keys: list[AccessKeySeed] = Field(default_factory=list)

    @property
    def domain_id(self) -> str:
        return self.id or stable_hex("domain", self.name)


class DataDiskSeed(_Model):
    """A data disk of a seeded server (an EVS volume; the ECS details list it after the system disk)."""

    id: str | None = Field(
        default=None, description="volume UUID (default: derived from the server id and slot)"
    )
    size: int = Field(default=100, ge=1, description="GB")


class ServerSeed(_Model):
    id: str
    name: str
    project: str
    status: Literal["ACTIVE", "SHUTOFF"] = "ACTIVE"
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    flavor: str = "s3.large.2"
    image_id: str | None = None
    os_version: str = "Ubuntu 22.04 server 64bit"
    os_type: Literal["Linux", "Windows", "Other"] = "Linux"
    platform: str = "Ubuntu"
    system_disk_gb: int = 40
    # The system volume's UUID; None: a stable one derived from the server id (the same on every reset).
    system_volume_id: str | None = None
    # Data disks: a count (each 100 GB, derived ids) or a list of disks (the pages give no maximum).
    data_disks: int | list[DataDiskSeed] = Field(default_factory=list)
    ip: str | None = None
    availability_zone: str | None = None
    locked: bool = False
    created_at: datetime | None = None

    @field_validator("data_disks")
    @classmethod
    def _disk_count(cls, disks: int | list[DataDiskSeed]) -> int | list[DataDiskSeed]:
        if isinstance(disks, int) and disks < 0:
            raise ValueError("data_disks: a count must not be negative")
        return disks

    def volume_ids(self) -> list[str]:
        """The system volume's id, then each data disk's, in slot order (what the ECS attaches)."""
        return [self.system_volume_id or stable_uuid("volume", self.id)] + [
            disk.id or stable_uuid("volume", self.id, str(slot)) for slot, disk in self.disks()
        ]

    def disks(self) -> list[tuple[int, DataDiskSeed]]:
        """The data disks with their slot (1, 2, ...; the system disk is slot 0)."""
        disks = (
            [DataDiskSeed() for _ in range(self.data_disks)]
            if isinstance(self.data_disks, int)
            else self.data_disks
        )
        return list(enumerate(disks, start=1))


class ImageSeed(_Model):
    id: str
    name: str
    project: str | None = Field(default=None, description="owner project (name or id); None for public")
    status: Literal["queued", "saving", "active", "killed"] = "active"
    visibility: Literal["private", "public", "shared"] = "private"
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    instance_id: str | None = None
    description: str = ""
    min_disk: int = 40
    min_ram: int = 0
    os_version: str = "Ubuntu 22.04 server 64bit"
    os_type: Literal["Linux", "Windows", "Other"] = "Linux"
    platform: str = "Ubuntu"
    protected: bool = False
    disk_format: str = "zvhd2"
    image_size: int = 2_147_483_648


class Distribution(_Model):
    """A duration drawn per job: uniform in [mean - spread, mean + spread], never below zero.

    [inference] The brief names ``mean`` and ``spread``; we read ``spread`` as the half-width of a uniform
    distribution (bounded, so tests can rely on a worst case).
    """

    mean: float = Field(ge=0)
    spread: float = Field(default=0.0, ge=0)


Duration = float | Distribution


#: Seconds from a timing value: a plain number, or a draw from a distribution (the cloud's seeded RNG).
Durations = Callable[[Duration], float]


class Timing(_Model):
    image_job_seconds: Duration = 5.0
    export_job_seconds: Duration = 5.0
    # [inference] how long a sharing job (add, delete, update members) runs; the job page's examples end in
    # one to three seconds.
    member_job_seconds: Duration = 2.0
    stop_seconds: Duration = 2.0
    start_seconds: Duration = 2.0
    # [inference] how long IMS jobs stay INIT (image "queued") before RUNNING ("saving").
    job_init_seconds: float = Field(default=1.0, ge=0)
    token_ttl_seconds: float = Field(default=24 * 3600, gt=0)
    progress_profile: Literal["linear", "stepped"] = "linear"


class Limits(_Model):
    image_quota: int = Field(default=50, ge=0)
    max_running_image_jobs: int = Field(default=40, ge=0)
    max_image_tags: int = Field(default=10, ge=0)
    # [inference] IMS does not document unique names (IMG.0009 exists, the create page never says names
    # must be unique). Off by default; a seed may switch it on.
    unique_image_names: bool = False
    # restrictions_on_image_sharing.rst: "A system disk image or data disk image can be shared with a maximum
    # of 256 tenants".
    max_image_members: int = Field(default=256, ge=0)
    requests_per_second: float | None = Field(default=None, gt=0)
    # [inference] the allowed X-Sdk-Date skew; contract §2.3 says 15 minutes.
    signature_skew_seconds: float = 15 * 60


FaultKind = Literal[
    "server_error",
    "throttle_429",
    "ims_flow_control",
    "apig_throttle",
    "ecs_flow_limit",
    "connection_reset",
    "delay",
    "commit_then_fail",
    "job_fail",
    "job_stuck",
    "token_revoked",
]


class FaultRuleSeed(_Model):
    """One fault rule. Match by ``operation`` (a stats name) and/or ``method`` + ``path`` (glob).

    When it fires: ``first`` N matching calls, or exactly the ``nth`` one, or with ``probability``
    (seeded RNG); with none of these, on every matching call. ``times`` caps the number of firings.
    """

    id: str | None = None
    kind: FaultKind
    operation: str | None = None
    method: str | None = None
    path: str | None = None
    probability: float | None = Field(default=None, ge=0, le=1)
    first: int | None = Field(default=None, ge=1)
    nth: int | None = Field(default=None, ge=1)
    times: int | None = Field(default=None, ge=1)
    status: int | None = Field(default=None, ge=100, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, ge=0)
    error_code: str | None = None
    fail_reason: str | None = None
    message: str | None = None
    mode: Literal["error", "reset"] = "error"

    @model_validator(mode="after")
    def _needs_a_target(self) -> FaultRuleSeed:
        if self.operation is None and self.path is None and self.method is None:
            raise ValueError("a fault rule needs an operation, a path or a method to match")
        return self


class VaultSeed(_Model):
    """A CBR vault a full-ECS image may name (``vault_id``). [inference] CBR is not an API the local cloud
    emulates: a seeded vault only exists, so that ``POST /v1/cloudimages/wholeimages/action`` can check the
    ``vault_id`` it is given against the project's vaults."""

    id: str
    name: str = "vault"
    project: str


class Seed(_Model):
    domains: list[DomainSeed] = Field(default_factory=list)
    servers: list[ServerSeed] = Field(default_factory=list)
    images: list[ImageSeed] = Field(default_factory=list)
    buckets: list[str] = Field(default_factory=list)
    timing: Timing = Field(default_factory=Timing)
    limits: Limits = Field(default_factory=Limits)
    faults: list[FaultRuleSeed] = Field(default_factory=list)
    random_seed: int = 0
    #: CBR vaults (full-ECS images from an ECS name one: ``vault_id``).
    vaults: list[VaultSeed] = Field(default_factory=list)

    @field_validator("servers")
    @classmethod
    def _unique_servers(cls, servers: list[ServerSeed]) -> list[ServerSeed]:
        ids = [s.id for s in servers]
        if len(ids) != len(set(ids)):
            raise ValueError("server ids must be unique")
        # A volume is attached to one server only (EVS disks here are never shared or multi-attached).
        volumes = [v for s in servers for v in s.volume_ids()]
        if len(volumes) != len(set(volumes)):
            raise ValueError("volume ids (system_volume_id, data_disks[].id) must be unique")
        return servers

    @model_validator(mode="after")
    def _projects_exist(self) -> Seed:
        known = {p.id for d in self.domains for p in d.projects} | {
            p.name for d in self.domains for p in d.projects
        }
        for server in self.servers:
            if server.project not in known:
                raise ValueError(f"server {server.name!r}: unknown project {server.project!r}")
        for image in self.images:
            if image.project is not None and image.project not in known:
                raise ValueError(f"image {image.name!r}: unknown project {image.project!r}")
        for vault in self.vaults:
            if vault.project not in known:
                raise ValueError(f"vault {vault.name!r}: unknown project {vault.project!r}")
        return self


def parse_seed(data: dict[str, Any] | None) -> Seed:
    return Seed.model_validate(data or {})


def load_seed(path: str | Path) -> Seed:
    """Read a seed from a ``.json`` file or a YAML file (any other suffix)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{path}: a seed file must hold a mapping at the top level")
    return parse_seed(data)


def demo_seed() -> Seed:
    return load_seed(DEMO_SEED_PATH)
