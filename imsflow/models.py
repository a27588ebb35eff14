"""Pydantic models of every request and response imsflow exchanges with IAM, ECS and IMS.

Responses allow unknown fields (the clouds add attributes over time); requests forbid them and check the
IMS rules of ``imsflow.validation``. Field names follow the API pages; awkward wire names
(``OS-EXT-STS:vm_state``, ``__imagetype``) are aliases, and models accept both spellings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from imsflow import validation
from imsflow.errors import InvalidRequestError

__all__ = [
    "CatalogEndpoint",
    "CatalogEntry",
    "CopyImageRequest",
    "CreateDataImagesRequest",
    "CreateImageFromEcsRequest",
    "CreateWholeImageRequest",
    "DataImage",
    "DeleteImageRequest",
    "DomainRef",
    "EcsJob",
    "EcsJobEntities",
    "EcsSubJob",
    "EcsSubJobEntities",
    "ExportImageRequest",
    "IamToken",
    "Identity",
    "Image",
    "ImageList",
    "ImageListQuery",
    "ImageMember",
    "ImageMembers",
    "ImageMembersRequest",
    "ImageTag",
    "ImageTagsRequest",
    "ImsJob",
    "ImsSubJob",
    "JobEntities",
    "JobIdResponse",
    "JobResult",
    "JobStatus",
    "OsStart",
    "OsStop",
    "PasswordMethod",
    "PasswordUser",
    "Project",
    "ProjectList",
    "ProjectRef",
    "Quota",
    "QuotaResource",
    "QuotaResponse",
    "Role",
    "Scope",
    "Server",
    "ServerActionRequest",
    "ServerDetail",
    "ServerImage",
    "ServerPage",
    "ServerRef",
    "SubJobEntities",
    "TokenAuthBody",
    "TokenInfo",
    "TokenRequest",
    "TokenResponse",
    "TokenUser",
    "UpdateImageMembersRequest",
    "VolumeAttachment",
    "build_request",
    "tag_filter",
]

JobStatus = Literal["INIT", "RUNNING", "SUCCESS", "FAIL"]


def _as_utc(value: datetime) -> datetime:
    # Some pages write times without a zone (e.g. password_expires_at); they are all UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _lenient_time(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime | None:
    # A time in an unexpected format must not make a job or server unreadable.
    if value in (None, ""):
        return None
    try:
        parsed: datetime = handler(value)
    except ValidationError:
        return None
    return _as_utc(parsed)


Time = Annotated[datetime | None, WrapValidator(_lenient_time)]
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def _none_to_empty(value: Any) -> Any:
    return {} if value is None else value


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_body(self) -> dict[str, Any]:
        """The JSON body as the API expects it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


R = TypeVar("R", bound=BaseModel)


def build_request(model: type[R], /, **data: Any) -> R:
    """Build a request model, turning a pydantic ``ValidationError`` into ``InvalidRequestError``."""
    try:
        return model(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or model.__name__
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, InvalidRequestError):
            raise cause from None
        raise InvalidRequestError(field, first.get("input"), first["msg"]) from None


# --------------------------------------------------------------------------------------------- IAM


class DomainRef(_Response):
    id: str | None = None
    name: str | None = None


class ProjectRef(_Response):
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None


class TokenUser(_Response):
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None
    password_expires_at: Time = None


class CatalogEndpoint(_Response):
    id: str | None = None
    interface: str | None = None
    region: str | None = None
    region_id: str | None = None
    url: str | None = None


class CatalogEntry(_Response):
    id: str | None = None
    type: str | None = None
    name: str | None = None
    endpoints: list[CatalogEndpoint] = Field(default_factory=list)


class Role(_Response):
    id: str | None = None
    name: str | None = None


class TokenInfo(_Response):
    """The ``token`` object of ``POST /v3/auth/tokens``."""

    methods: list[str] = Field(default_factory=list)
    expires_at: UtcDatetime
    issued_at: Time = None
    user: TokenUser | None = None
    project: ProjectRef | None = None
    domain: DomainRef | None = None
    catalog: list[CatalogEntry] = Field(default_factory=list)
    roles: list[Role] = Field(default_factory=list)


class TokenResponse(_Response):
    token: TokenInfo


class IamToken(BaseModel):
    """A token and what it is scoped to; the value itself never shows in reprs or logs."""

    model_config = ConfigDict(frozen=True)

    value: SecretStr
    expires_at: UtcDatetime
    issued_at: UtcDatetime | None = None
    project_id: str | None = None
    project_name: str | None = None
    user_name: str | None = None
    user_id: str | None = None
    domain_name: str | None = None
    domain_id: str | None = None

    @classmethod
    def from_response(cls, subject_token: str, body: TokenResponse) -> IamToken:
        """Combine the ``X-Subject-Token`` header and the token body."""
        info = body.token
        user = info.user or TokenUser()
        domain = user.domain or info.domain or DomainRef()
        project = info.project or ProjectRef()
        return cls(
            value=SecretStr(subject_token),
            expires_at=info.expires_at,
            issued_at=info.issued_at,
            project_id=project.id,
            project_name=project.name,
            user_name=user.name,
            user_id=user.id,
            domain_name=domain.name,
            domain_id=domain.id,
        )

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        """True when the token expires less than ``seconds`` from ``now`` (or has expired)."""
        current = _as_utc(now) if now is not None else datetime.now(UTC)
        return (self.expires_at - current).total_seconds() < seconds


class _NamedDomain(_Request):
    id: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> _NamedDomain:
        if not self.id and not self.name:
            raise InvalidRequestError("domain", None, "give the domain (account) name or id")
        return self


class PasswordUser(_Request):
    name: str = Field(min_length=1)
    password: SecretStr
    domain: _NamedDomain


class PasswordMethod(_Request):
    user: PasswordUser


class Identity(_Request):
    methods: list[Literal["password"]] = ["password"]  # pydantic copies mutable defaults
    password: PasswordMethod


class Scope(_Request):
    project: _NamedDomain | None = None
    domain: _NamedDomain | None = None


class TokenAuthBody(_Request):
    identity: Identity
    scope: Scope | None = None


class TokenRequest(_Request):
    """Body of ``POST /v3/auth/tokens``; ``imsflow.auth.token_request_body`` unwraps the password."""

    auth: TokenAuthBody

    @classmethod
    def password(
        cls,
        *,
        domain: str,
        username: str,
        password: SecretStr,
        project_id: str | None = None,
        project_name: str | None = None,
    ) -> TokenRequest:
        """Password login; project-scoped when a project id or name is given, else domain-scoped."""
        if project_id or project_name:
            scope = Scope(project=_NamedDomain(id=project_id, name=None if project_id else project_name))
        else:
            scope = Scope(domain=_NamedDomain(name=domain))
        user = PasswordUser(name=username, password=password, domain=_NamedDomain(name=domain))
        return cls(auth=TokenAuthBody(identity=Identity(password=PasswordMethod(user=user)), scope=scope))


class Project(_Response):
    id: str
    name: str
    domain_id: str | None = None
    parent_id: str | None = None
    enabled: bool | None = None
    is_domain: bool | None = None
    description: str | None = None


class ProjectList(_Response):
    projects: list[Project] = Field(default_factory=list)
    links: dict[str, str | None] | None = None


# --------------------------------------------------------------------------------------------- ECS


class ServerImage(_Response):
    id: str | None = None


class VolumeAttachment(_Response):
    """One entry of ``os-extended-volumes:volumes_attached``: ``bootIndex`` ``"0"`` is the system disk."""

    id: str
    device: str | None = None
    boot_index: str | None = Field(default=None, alias="bootIndex")
    delete_on_termination: str | None = None

    @property
    def device_name(self) -> str | None:
        """The device's last path part (``vdb`` of ``/dev/vdb``), or None when the ECS does not say."""
        return self.device.rstrip("/").rsplit("/", 1)[-1] or None if self.device else None


class Server(_Response):
    """An ECS as ``GET /v1/{project_id}/cloudservers/{server_id}`` returns it."""

    id: str
    name: str
    status: str
    vm_state: str | None = Field(default=None, alias="OS-EXT-STS:vm_state")
    task_state: str | None = Field(default=None, alias="OS-EXT-STS:task_state")
    power_state: int | None = Field(default=None, alias="OS-EXT-STS:power_state")
    locked: bool | None = None
    tags: Annotated[list[str], BeforeValidator(_none_to_list)] = Field(default_factory=list)
    created: Time = None
    updated: Time = None
    metadata: Annotated[dict[str, Any], BeforeValidator(_none_to_empty)] = Field(default_factory=dict)
    image: ServerImage | None = None
    tenant_id: str | None = None
    flavor: dict[str, Any] | None = None
    addresses: dict[str, Any] | None = None
    description: str | None = None
    availability_zone: str | None = Field(default=None, alias="OS-EXT-AZ:availability_zone")
    volumes_attached: Annotated[list[VolumeAttachment], BeforeValidator(_none_to_list)] = Field(
        default_factory=list, alias="os-extended-volumes:volumes_attached"
    )

    @property
    def is_stopped(self) -> bool:
        """Stopped and idle: the state IMS wants (status SHUTOFF alone also covers powering-on)."""
        return self.status == "SHUTOFF" and self.task_state is None

    @property
    def is_running(self) -> bool:
        """Running and idle (status ACTIVE alone also covers powering-off)."""
        return self.status == "ACTIVE" and self.task_state is None

    @property
    def system_volume_id(self) -> str | None:
        """Id of the boot volume, when the server lists its volumes."""
        for volume in self.volumes_attached:
            if volume.boot_index == "0":
                return volume.id
        return None

    @property
    def data_volumes(self) -> list[VolumeAttachment]:
        """The attached data disks (every volume but the boot one: ``bootIndex`` other than ``"0"``), in
        device order (``/dev/vdb``, ``/dev/vdc``, ..., ``/dev/vdz``, ``/dev/vdaa``; no device last)."""
        data = [v for v in self.volumes_attached if v.boot_index != "0"]
        return sorted(data, key=lambda v: (v.device is None, len(v.device or ""), v.device or "", v.id))

    @property
    def data_volume_ids(self) -> list[str]:
        """IDs of :attr:`data_volumes`, in device order."""
        return [v.id for v in self.data_volumes]


class ServerDetail(_Response):
    server: Server


class ServerPage(_Response):
    """One page of ``GET /v1/{project_id}/cloudservers/detail``; ``count`` is the total."""

    count: int
    servers: list[Server] = Field(default_factory=list)


class ServerRef(_Request):
    id: str


class OsStop(_Request):
    servers: list[ServerRef] = Field(min_length=1)
    type: Literal["SOFT", "HARD"] = "SOFT"


class OsStart(_Request):
    servers: list[ServerRef] = Field(min_length=1)


class ServerActionRequest(_Request):
    """Body of ``POST /v1/{project_id}/cloudservers/action`` (batch stop or start)."""

    os_stop: OsStop | None = Field(default=None, alias="os-stop")
    os_start: OsStart | None = Field(default=None, alias="os-start")

    @model_validator(mode="after")
    def _exactly_one(self) -> ServerActionRequest:
        if (self.os_stop is None) == (self.os_start is None):
            raise InvalidRequestError("action", None, "give exactly one of os-stop and os-start")
        return self

    @classmethod
    def stop(cls, server_ids: list[str], type: Literal["SOFT", "HARD"] = "SOFT") -> ServerActionRequest:
        return cls(os_stop=OsStop(servers=[ServerRef(id=i) for i in server_ids], type=type))

    @classmethod
    def start(cls, server_ids: list[str]) -> ServerActionRequest:
        return cls(os_start=OsStart(servers=[ServerRef(id=i) for i in server_ids]))


class JobIdResponse(_Response):
    job_id: str


class EcsSubJobEntities(_Response):
    server_id: str | None = None
    nic_id: str | None = None
    errorcode_message: str | None = None


class _Job(_Response):
    """The fields every job and sub-job of ECS and IMS carries (the job pages share them)."""

    status: JobStatus | str
    job_id: str | None = None
    job_type: str | None = None
    begin_time: Time = None
    end_time: Time = None
    error_code: str | None = None
    fail_reason: str | None = None
    # The cloud's request ID of the job-query answer this was read from (set by the client, not a body field).
    _request_id: str | None = PrivateAttr(default=None)

    @property
    def request_id(self) -> str | None:
        """The request ID of the job-query answer (``X-Request-Id``), for error messages."""
        return self._request_id


class EcsSubJob(_Job):
    entities: Annotated[EcsSubJobEntities, BeforeValidator(_none_to_empty)] = Field(
        default_factory=EcsSubJobEntities
    )


class EcsJobEntities(_Response):
    server_id: str | None = None
    nic_id: str | None = None
    sub_jobs_total: int | None = None
    sub_jobs: Annotated[list[EcsSubJob], BeforeValidator(_none_to_list)] = Field(default_factory=list)


class EcsJob(_Job):
    """``GET /v1/{project_id}/jobs/{job_id}`` on the ECS endpoint."""

    entities: Annotated[EcsJobEntities, BeforeValidator(_none_to_empty)] = Field(
        default_factory=EcsJobEntities
    )
    # Set instead of the job fields when the query itself failed.
    code: str | None = None
    message: str | None = None

    @property
    def server_ids(self) -> list[str]:
        """Servers the job touched, from its sub-jobs."""
        ids = [sub.entities.server_id for sub in self.entities.sub_jobs if sub.entities.server_id]
        if self.entities.server_id:
            ids.insert(0, self.entities.server_id)
        return ids


# --------------------------------------------------------------------------------------------- IMS


class ImageTag(_Request):
    """One ``{"key", "value"}`` entry of ``image_tags``; surrounding spaces are trimmed as IMS does."""

    key: str
    value: str = ""

    @model_validator(mode="after")
    def _rule(self) -> ImageTag:
        self.key, self.value = validation.check_image_tag(self.key, self.value)
        return self


def _check_tag_fields(tags: list[str] | None, image_tags: list[ImageTag] | None) -> None:
    """``tags`` or ``image_tags`` (not both), at most ten distinct keys: an image's and a data image's."""
    validation.check_tags_exclusive(tags, image_tags)
    keys = [validation.parse_dotted_tag(t)[0] for t in tags or []]
    keys += [t.key for t in image_tags or []]
    validation.check_tag_count(keys, "image_tags" if image_tags is not None else "tags")


class DataImage(_Request):
    """One member of ``data_images``: a data-disk image of one of the ECS's data disks (creating_an_image.rst,
    Table 1: ``name``, ``volume_id``, ``description``, ``tags``; the page's example also sends
    ``image_tags`` in a member). Name, description and tags follow the image's own rules."""

    name: str
    volume_id: str
    description: str | None = None
    tags: list[str] | None = None
    image_tags: list[ImageTag] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validation.check_image_name(value, "data_images.name")

    @field_validator("volume_id")
    @classmethod
    def _volume_id(cls, value: str) -> str:
        return validation.check_uuid(value, "data_images.volume_id")

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return None if value is None else validation.check_description(value, "data_images.description")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else validation.check_tags(value, "data_images.tags")

    @model_validator(mode="after")
    def _cross_field(self) -> DataImage:
        _check_tag_fields(self.tags, self.image_tags)
        return self


#: The note on ``data_images`` in creating_an_image.rst.
DATA_IMAGES_RULE = (
    'data-disk images (data_images) are a request of their own: the API page says "When you create a data '
    'disk image using a data disk ... You cannot specify instance_id." Send the system-disk image '
    "(instance_id) and the data-disk images (CreateDataImagesRequest) as two requests"
)


class _NamedImage(_Request):
    """The name and description of an image a request makes (an image from an ECS, a full-ECS image, a copy):
    the image attributes' rules (image_attributes.rst), one place."""

    name: str
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validation.check_image_name(value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return None if value is None else validation.check_description(value)


class _ImageAttributes(_NamedImage):
    """What every image-making body of ``POST /v2/cloudimages/action`` and
    ``POST /v1/cloudimages/wholeimages/action`` shares (the pages' tables list the same fields and rules):
    the name, description, tags, enterprise project and memory bounds of the image to make."""

    tags: list[str] | None = None
    image_tags: list[ImageTag] | None = None
    enterprise_project_id: str | None = None
    min_ram: int | None = Field(default=None, ge=0)
    max_ram: int | None = Field(default=None, ge=0)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else validation.check_tags(value)

    @field_validator("enterprise_project_id")
    @classmethod
    def _enterprise_project_id(cls, value: str | None) -> str | None:
        return None if value is None else validation.check_enterprise_project_id(value)

    @model_validator(mode="after")
    def _attributes(self) -> Self:
        _check_tag_fields(self.tags, self.image_tags)
        if self.min_ram is not None and self.max_ram is not None and self.max_ram < self.min_ram:
            raise InvalidRequestError("max_ram", self.max_ram, "max_ram must not be below min_ram")
        return self


class CreateImageFromEcsRequest(_ImageAttributes):
    """Body of ``POST /v2/cloudimages/action`` for a system-disk image of an ECS.

    Never with data-disk images: the page's note on ``data_images`` says "You cannot specify instance_id"
    with them (:class:`CreateDataImagesRequest` is that request). ``data_images`` is here only to refuse a
    non-empty one by that rule, before anything is sent."""

    instance_id: str
    #: Refused when not empty (:data:`DATA_IMAGES_RULE`); ``[]`` is left as the caller sent it.
    data_images: list[DataImage] | None = None

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, value: str) -> str:
        return validation.check_uuid(value, "instance_id")

    @model_validator(mode="after")
    def _cross_field(self) -> CreateImageFromEcsRequest:
        if self.data_images:
            volumes = [d.volume_id for d in self.data_images]
            raise InvalidRequestError("data_images", volumes, DATA_IMAGES_RULE)
        return self


class CreateDataImagesRequest(_Request):
    """Body of ``POST /v2/cloudimages/action`` for data-disk images of data disks: ``data_images`` only, one
    member per data disk (all of one ECS), made by one ``imsVolumesToSysDataImagesJob``.

    The page's note on ``data_images``: "if other parameters (such as name, description, and tags) in this
    table have values, the system uses the value of data_images. You cannot specify instance_id." So there is
    no ``instance_id`` (nor a top-level name or tags) here: each member names and tags its image.
    """

    data_images: list[DataImage] = Field(min_length=1)
    enterprise_project_id: str | None = None

    @field_validator("enterprise_project_id")
    @classmethod
    def _enterprise_project_id(cls, value: str | None) -> str | None:
        return None if value is None else validation.check_enterprise_project_id(value)

    @model_validator(mode="after")
    def _cross_field(self) -> CreateDataImagesRequest:
        volumes = [d.volume_id for d in self.data_images]
        if len(set(volumes)) < len(volumes):
            raise InvalidRequestError("data_images", volumes, "each data disk (volume_id) at most once")
        return self

    @property
    def volumes(self) -> list[str]:
        """The data disks (volume IDs), in the members' order."""
        return [d.volume_id for d in self.data_images]


#: creating_a_full-ecs_image.rst: the two body forms, and which fields go with which.
WHOLE_IMAGE_FORM_RULE = (
    "a full-ECS image comes from an ECS (instance_id, optionally vault_id) or from a CSBS/CBR backup "
    "(backup_id, whole_image_type): exactly one of instance_id and backup_id"
)


class CreateWholeImageRequest(_ImageAttributes):
    """Body of ``POST /v1/cloudimages/wholeimages/action``: a full-ECS image (the system disk and every data
    disk as one image), made by an ``imsCreateWholeImageByInstanceJob`` (from an ECS) or an
    ``imsCreateWholeImageByBackupJob`` (from a backup).

    The page's two forms: from an ECS, ``instance_id`` with ``vault_id`` ("If a CBR backup is created,
    vault_id is mandatory. If a CSBS backup is created, vault_id is optional": which one the cloud makes is
    the region's, so it stays optional here); from a CSBS or CBR backup, ``backup_id`` with
    ``whole_image_type`` (``CBR`` mandatory for a CBR backup, default ``CSBS``). A field of one form is
    refused in the other, before anything is sent.
    """

    instance_id: str | None = None
    vault_id: str | None = None
    backup_id: str | None = None
    whole_image_type: Literal["CBR", "CSBS"] | None = None

    @field_validator("instance_id", "vault_id", "backup_id")
    @classmethod
    def _ids(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else validation.check_uuid(value, str(info.field_name))

    @model_validator(mode="after")
    def _cross_field(self) -> CreateWholeImageRequest:
        if (self.instance_id is None) == (self.backup_id is None):
            raise InvalidRequestError("instance_id", self.instance_id, WHOLE_IMAGE_FORM_RULE)
        if self.instance_id is not None and self.whole_image_type is not None:
            raise InvalidRequestError(
                "whole_image_type", self.whole_image_type, "whole_image_type goes with backup_id only"
            )
        if self.backup_id is not None and self.vault_id is not None:
            raise InvalidRequestError(
                "vault_id", self.vault_id, "vault_id goes with instance_id only (a backup is in its vault)"
            )
        return self


class SubJobEntities(_Response):
    image_id: str | None = None
    image_name: str | None = None


class ImsSubJob(_Job):
    entities: Annotated[SubJobEntities, BeforeValidator(_none_to_empty)] = Field(
        default_factory=SubJobEntities
    )


class JobResult(_Response):
    image_id: str | None = None
    project_id: str | None = None
    status: str | None = None


class JobEntities(_Response):
    """``entities`` of an IMS job. ``process_percent`` and ``current_task`` are not on the OTC page;
    Huawei Cloud's job API reports them (progress in percent), so they are read when present."""

    image_id: str | None = None
    image_name: str | None = None
    process_percent: float | None = None
    current_task: str | None = None
    results: Annotated[list[JobResult], BeforeValidator(_none_to_list)] = Field(default_factory=list)
    sub_jobs_result: Annotated[list[ImsSubJob], BeforeValidator(_none_to_list)] = Field(default_factory=list)
    sub_jobs_list: Annotated[list[str], BeforeValidator(_none_to_list)] = Field(default_factory=list)


class ImsJob(_Job):
    """``GET /v1/{project_id}/jobs/{job_id}`` on the IMS endpoint."""

    entities: Annotated[JobEntities, BeforeValidator(_none_to_empty)] = Field(default_factory=JobEntities)

    @property
    def image_id(self) -> str | None:
        """The image the job made: ``entities.image_id``, else the first sub-job that names one."""
        if self.entities.image_id:
            return self.entities.image_id
        for sub in self.entities.sub_jobs_result:
            if sub.entities.image_id:
                return sub.entities.image_id
        return None

    @property
    def image_ids(self) -> list[str]:
        """Every image the job made, in the job's order: one per ``sub_jobs_result`` member that names one
        (an ``imsVolumesToSysDataImagesJob``: the system-disk image first, then the data-disk images), else
        :attr:`image_id` alone (or none)."""
        ids = [sub.entities.image_id for sub in self.entities.sub_jobs_result if sub.entities.image_id]
        if ids:
            return list(dict.fromkeys(ids))
        return [self.image_id] if self.image_id else []

    @property
    def process_percent(self) -> float | None:
        return self.entities.process_percent


class Image(_Response):
    """An image as ``GET /v2/images/{id}`` and ``GET /v2/cloudimages`` return it."""

    id: str
    name: str | None = None
    status: str | None = None
    visibility: str | None = None
    imagetype: str | None = Field(default=None, alias="__imagetype")
    owner: str | None = None
    protected: bool | None = None
    min_disk: int | None = None
    min_ram: int | None = None
    # A string in the response tables, an integer in requests.
    max_ram: int | str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    created_at: Time = None
    updated_at: Time = None
    tags: Annotated[list[str], BeforeValidator(_none_to_list)] = Field(default_factory=list)
    description: str | None = Field(default=None, alias="__description")
    image_size: int | None = Field(default=None, alias="__image_size")
    size: int | None = None
    virtual_size: int | None = None
    os_type: str | None = Field(default=None, alias="__os_type")
    os_version: str | None = Field(default=None, alias="__os_version")
    os_bit: str | None = Field(default=None, alias="__os_bit")
    platform: str | None = Field(default=None, alias="__platform")
    is_registered: str | None = Field(default=None, alias="__isregistered")
    image_source_type: str | None = Field(default=None, alias="__image_source_type")
    original_image_name: str | None = Field(default=None, alias="__originalimagename")
    data_origin: str | None = Field(default=None, alias="__data_origin")
    virtual_env_type: str | None = None
    hw_firmware_type: str | None = None
    enterprise_project_id: str | None = None
    #: image_attributes.rst: a Boolean; read as the string "true" too, as the other flags are written.
    whole_image: bool | str | None = Field(default=None, alias="__whole_image")
    checksum: str | None = None
    self_link: str | None = Field(default=None, alias="self")
    file: str | None = None
    schema_link: str | None = Field(default=None, alias="schema")
    # Replication (image_attributes.rst): an encrypted image names its KMS key. ``__system_encrypted`` ("1"
    # encrypted) is read when present (not on the OTC pages).
    cmk_id: str | None = Field(default=None, alias="__system__cmkid")
    system_encrypted: str | None = Field(default=None, alias="__system_encrypted")

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @property
    def is_whole_image(self) -> bool:
        """A full-ECS image (``__whole_image`` true): the system disk and every data disk of an ECS in one
        image; it cannot be exported or replicated (creating_a_full-ecs_image.rst)."""
        return self.whole_image is True or str(self.whole_image).lower() == "true"

    @property
    def is_data_image(self) -> bool:
        """A data-disk image (``virtual_env_type`` ``DataImage``), not one of a system disk."""
        return self.virtual_env_type == "DataImage"

    @property
    def tag_map(self) -> dict[str, str]:
        """The tags as a mapping. IMS lists them as ``key.value`` (tags made before its tag upgrade) or
        ``key=value``; tag keys never hold ``.`` or ``=``, so the first of either separates key and value."""
        tags: dict[str, str] = {}
        for tag in self.tags:
            cut = min((i for i in (tag.find("."), tag.find("=")) if i >= 0), default=-1)
            if cut > 0:
                tags[tag[:cut]] = tag[cut + 1 :]
        return tags


class ImageList(_Response):
    images: list[Image] = Field(default_factory=list)


def tag_filter(key: str, value: str) -> str:
    """The ``tag`` filter of ``GET /v2/cloudimages`` for one tag: ``Key=Value``, the only documented query
    form (also for tags created in the ``Key.Value`` form)."""
    return f"{key}={value}"


class ImageListQuery(_Request):
    """Filters of ``GET /v2/cloudimages``; ``to_params()`` gives the query string."""

    imagetype: Literal["gold", "private", "shared"] | None = Field(default=None, alias="__imagetype")
    # The page: "The value can be true" (and only that).
    isregistered: Literal[True] | None = Field(default=None, alias="__isregistered")
    whole_image: bool | None = Field(default=None, alias="__whole_image")
    name: str | None = None
    id: str | None = None
    status: str | None = None
    owner: str | None = None
    visibility: Literal["public", "private", "shared"] | None = None
    tag: str | None = None
    protected: bool | None = None
    os_type: str | None = Field(default=None, alias="__os_type")
    os_bit: str | None = Field(default=None, alias="__os_bit")
    platform: str | None = Field(default=None, alias="__platform")
    disk_format: str | None = None
    container_format: str | None = None
    min_disk: int | None = Field(default=None, ge=0)
    min_ram: int | None = Field(default=None, ge=0)
    virtual_env_type: str | None = None
    enterprise_project_id: str | None = None
    member_status: Literal["accepted", "rejected", "pending"] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    marker: str | None = None
    limit: int | None = Field(default=None, ge=1)
    sort_key: (
        Literal["name", "container_format", "disk_format", "status", "id", "size", "created_at"] | None
    ) = None
    sort_dir: Literal["asc", "desc"] | None = None

    @field_validator("created_at", "updated_at")
    @classmethod
    def _time_filter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        operator, colon, _ = value.partition(":")
        if not colon or operator not in {"gt", "gte", "lt", "lte", "eq", "neq"}:
            rule = "must be <gt|gte|lt|lte|eq|neq>:<UTC time>"
            raise InvalidRequestError("created_at/updated_at", value, rule)
        return value

    @field_validator("tag")
    @classmethod
    def _tag_filter(cls, value: str | None) -> str | None:
        # The page (row ``tag``): tags are queried as ``tag=Key=Value``, even those created as ``Key.Value``.
        return None if value is None else validation.check_tag_filter(value)

    @classmethod
    def tagged(cls, key: str, value: str, **filters: Any) -> ImageListQuery:
        """The query for images carrying the tag ``key``/``value`` (plus other ``filters``)."""
        return cls(tag=tag_filter(key, value), **filters)

    def to_params(self) -> dict[str, str]:
        """Query parameters; booleans as ``true``/``false`` as the page writes them."""
        params: dict[str, str] = {}
        for key, value in self.model_dump(mode="json", by_alias=True, exclude_none=True).items():
            params[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return params


class ExportImageRequest(_Request):
    """Body of ``POST /v1/cloudimages/{image_id}/file``."""

    bucket_url: str
    file_format: Literal["qcow2", "vhd", "zvhd", "vmdk"] | None = None
    is_quick_export: bool | None = None

    @field_validator("bucket_url")
    @classmethod
    def _bucket_url(cls, value: str) -> str:
        return validation.check_bucket_url(value)

    @model_validator(mode="after")
    def _format_rule(self) -> ExportImageRequest:
        if self.is_quick_export and self.file_format is not None:
            raise InvalidRequestError(
                "file_format", self.file_format, "must be omitted with is_quick_export (output is ZVHD2)"
            )
        if not self.is_quick_export and self.file_format is None:
            raise InvalidRequestError(
                "file_format", None, "is required unless is_quick_export is true (qcow2, vhd, zvhd or vmdk)"
            )
        return self


class ImageMembersRequest(_Request):
    """Body of ``POST`` (add) and ``DELETE`` (remove) ``/v1/cloudimages/members``
    (adding_image_sharing_members.rst, deleting_image_sharing_members.rst): both lists mandatory."""

    images: list[validation.ImageId] = Field(min_length=1)
    projects: list[validation.ProjectId] = Field(min_length=1)

    @field_validator("images", "projects")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class UpdateImageMembersRequest(_Request):
    """Body of ``PUT /v1/cloudimages/members`` (updating_the_sharing_status_for_images.rst): the receiving
    project (``project_id``, its own) accepts or rejects shared images; ``vault_id`` only for a full-ECS
    image made from a CBR backup."""

    images: list[validation.ImageId] = Field(min_length=1)
    project_id: validation.ProjectId
    status: Literal["accepted", "rejected"]
    vault_id: str | None = None

    @field_validator("images")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ImageMember(_Response):
    """One member of ``GET /v2/images/{image_id}/members`` (the Glance members page, Table 2)."""

    member_id: str
    image_id: str | None = None
    status: str | None = None  # accepted | rejected | pending
    created_at: Time = None
    updated_at: Time = None
    schema_: str | None = Field(default=None, alias="schema")


class ImageMembers(_Response):
    """``GET /v2/images/{image_id}/members``."""

    members: Annotated[list[ImageMember], BeforeValidator(_none_to_list)] = Field(default_factory=list)
    schema_: str | None = Field(default=None, alias="schema")

    def status_of(self, project_id: str) -> str | None:
        """The member status of ``project_id`` (None: not a member)."""
        return next((m.status for m in self.members if m.member_id == project_id), None)


class DeleteImageRequest(_Request):
    """Optional body of ``DELETE /v2/images/{image_id}``."""

    delete_backup: bool | None = None


class QuotaResource(_Response):
    type: str
    used: int
    quota: int
    min: int | None = None
    max: int | None = None

    @property
    def remaining(self) -> int:
        return max(self.quota - self.used, 0)


class Quota(_Response):
    resources: list[QuotaResource] = Field(default_factory=list)

    def get(self, type: str = "image") -> QuotaResource | None:
        """The quota of one resource type (``image``, ``image_shared``, ``image_member``)."""
        return next((r for r in self.resources if r.type == type), None)


class QuotaResponse(_Response):
    quotas: Quota


# ----------------------------------------------------------- replication within a region, image tags


class CopyImageRequest(_NamedImage):
    """Body of ``POST /v1/cloudimages/{image_id}/copy`` (replicating_an_image_within_a_region.rst): the
    page's four fields, checked by its rules before anything is sent.

    ``cmk_id``: the KMS key to encrypt the copy with (a key ID is a UUID); ``enterprise_project_id``: ``"0"``
    (the default project) or a UUID. Empty strings are the page's "left blank": not sent.
    """

    cmk_id: str | None = None
    enterprise_project_id: str | None = None

    @field_validator("cmk_id")
    @classmethod
    def _cmk_id(cls, value: str | None) -> str | None:
        return validation.check_uuid(value, "cmk_id") if value else None

    @field_validator("enterprise_project_id")
    @classmethod
    def _enterprise_project_id(cls, value: str | None) -> str | None:
        return validation.check_enterprise_project_id(value) if value else None


class ImageTagsRequest(_Request):
    """Body of ``POST /v2/{project_id}/images/{image_id}/tags/action``
    (adding_or_deleting_image_tags_in_a_batch.rst): ``create`` adds or overwrites tags by key, ``delete``
    removes them; keys unique in one request ("The keys of multiple tags in the request body must be
    unique"), at most 10 tags per image."""

    tags: list[ImageTag] = Field(min_length=1)
    action: Literal["create", "delete"] = "create"

    @model_validator(mode="after")
    def _unique_keys(self) -> ImageTagsRequest:
        keys = [t.key for t in self.tags]
        if len(set(keys)) != len(keys):
            raise InvalidRequestError("tags", keys, "each tag key once per request")
        validation.check_tag_count(keys, "tags")
        return self
