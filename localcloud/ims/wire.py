"""IMS on the wire: reading requests into :class:`~localcloud.ims.state.Ims` calls, writing the bodies.

Reading a request applies the page's field rules (the ``IMG.0001``-``IMG.0116`` format errors) in the
order the state then continues; one function per operation (``handler(ims, call, **path parameters) ->
Reply``) and the routing table :data:`ROUTES`, registered by ``app.py``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from localcloud.clock import fmt_millis, fmt_seconds
from localcloud.errors import ims_error
from localcloud.gateway import Call, Reply, Route
from localcloud.ims.state import (
    JOB_COPY,
    JOB_CREATE,
    JOB_DEL_MEMBERS,
    JOB_VOLUMES,
    JOB_WHOLE,
    MEMBER_JOBS,
    MEMBER_STATUSES,
    SORT_KEYS,
    SUB_JOB_VOLUME,
    TIME_OPERATORS,
    DataImageSpec,
    Image,
    ImageFilters,
    Ims,
    ImsJob,
    ImsSubJob,
    Member,
    TimeBound,
)
from localcloud.lifecycle import Position, ProgressProfile, progress_percent

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
NAME_CHARS = re.compile(r"^[A-Za-z0-9\-._ ]+\Z")  # \Z: "$" would let a final "\n" through
TAG_CHARS = re.compile(r"^[A-Za-z0-9_-]*\Z")
# [inference] OBS bucket naming: 3-63 characters, lowercase letters, digits, hyphens and periods.
BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EXPORT_FORMATS = ("qcow2", "vhd", "zvhd", "vmdk")
UNSUPPORTED_CREATE_FIELDS = ("image_url", "volume_id", "backup_id")
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
# A member of data_images when the images come from an ECS's data disks: creating_an_image.rst, Table 1
# (name, volume_id, description, tags), and image_tags, which the page's example "Creating a data disk image
# with parameter image_tags using a data disk" sends inside the member.
DATA_IMAGE_FIELDS = frozenset({"name", "volume_id", "description", "tags", "image_tags"})
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
# adding_image_sharing_members.rst / deleting_image_sharing_members.rst and
# updating_the_sharing_status_for_images.rst, request tables.
MEMBERS_FIELDS = frozenset({"images", "projects"})
UPDATE_MEMBERS_FIELDS = frozenset({"images", "project_id", "status", "vault_id"})


# ---- reading requests -------------------------------------------------------------------------------------


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


def _memory_and_project(body: dict[str, Any]) -> tuple[int, int | None, str]:
    """``min_ram`` (default 0), ``max_ram`` and ``enterprise_project_id`` (default "0") of an image-making
    body (create, full-ECS): a max below the min is IMG.0055, a non-string project IMG.0001."""
    min_ram = _ram(body.get("min_ram")) or 0
    max_ram = _ram(body.get("max_ram"))
    if max_ram and min_ram and max_ram < min_ram:
        raise ims_error("IMG.0055")
    eps = body.get("enterprise_project_id", "0")
    if not isinstance(eps, str):
        raise ims_error("IMG.0001")
    return min_ram, max_ram, eps


_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S")


def _time_filter(expr: str) -> TimeBound:
    """``gt:2018-10-28T10:00:00Z`` (or ``yyyy-MM-dd hh:mm:ss``) -> a bound on a datetime."""
    op, sep, text = expr.partition(":")
    if not sep or op not in TIME_OPERATORS:
        raise ims_error("IMG.0001")
    for fmt in _TIME_FORMATS:
        try:
            return TimeBound(op, datetime.strptime(text, fmt).replace(tzinfo=UTC))
        except ValueError:
            continue
    raise ims_error("IMG.0001")


# ---- writing bodies ---------------------------------------------------------------------------------------


def image_body(image: Image, viewer: str | None = None) -> dict[str, Any]:
    """An image as ``GET /v2/images/{id}`` and the ``images`` list show it (to ``viewer``: a shared image's
    ``__imagetype`` and ``visibility`` depend on who looks)."""
    viewer = viewer or image.owner
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
        "__imagetype": image.imagetype_for(viewer),
        "visibility": image.visibility_for(viewer),
        "virtual_env_type": image.virtual_env_type,
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
        # image_attributes.rst: "__whole_image | Boolean | Specifies whether the image is a full-ECS image".
        # [inference] shown on every image, as a JSON boolean (the page's type).
        "__whole_image": image.whole_image,
    }
    if image.max_ram is not None:
        body["max_ram"] = str(image.max_ram)  # a String in the list response table
    if image.imagetype != "gold":
        body["__originalimagename"] = image.original_image_id
        if image.volume_id:
            # [inference] the source of a data-disk image, in the form of an ECS image's ("volume,<id>").
            body["__data_origin"] = f"volume,{image.volume_id}"
        elif image.instance_id:
            # [inference] the source of an ECS image, as Huawei Cloud shows it ("instance,<id>").
            body["__data_origin"] = f"instance,{image.instance_id}"
    active_at = image.active_at
    if active_at is not None:
        body["active_at"] = fmt_seconds(active_at)
    body.update(_replication_attributes(image))
    return body


def job_body(
    job: ImsJob, now: datetime, profile: ProgressProfile, *, progress: bool = False
) -> dict[str, Any]:
    """``GET /v1/{project_id}/jobs/{job_id}`` on the IMS endpoint; with ``progress``, Huawei Cloud's
    ``GET /v1/cloudimages/job/{job_id}`` (ShowJobProgress, contract §6.8).

    Both have the same top-level fields. [inference] ShowJobProgress's entities always carry
    ``image_id``, ``image_name`` and ``process_percent`` (a number: 0 in INIT, the RUNNING share done,
    100 on SUCCESS, 0 on FAIL — the status, not the percent, tells that a job ended).
    """
    pos = job.timeline.at(now)
    status = pos.name
    entities: dict[str, Any] = {}
    if job.job_type in MEMBER_JOBS:
        entities = _members_job_entities(job, status)
    elif job.job_type == JOB_VOLUMES:
        entities = _volumes_job_entities(job, pos, now, profile, progress=progress)
    elif progress:
        percent = {"INIT": 0.0, "SUCCESS": 100.0, "FAIL": 0.0}.get(status)
        if percent is None:
            percent = progress_percent(pos.fraction, profile)
        entities = {"image_id": job.image_id, "image_name": job.image_name, "process_percent": percent}
    elif job.job_type in (JOB_CREATE, JOB_COPY, JOB_WHOLE):
        if status == "RUNNING":
            # [inference] not on the OTC page; Huawei Cloud's job progress API reports
            # entities.process_percent. Ours: percent of the RUNNING phase done, 0-100.
            entities["process_percent"] = progress_percent(pos.fraction, profile)
        if status in ("SUCCESS", "FAIL"):
            entities["image_name"] = job.image_name
            entities["image_id"] = job.image_id
    else:
        entities["image_id"] = job.image_id
        if status == "RUNNING":
            # [inference] as for create above: process_percent while RUNNING (not on the OTC page).
            entities["process_percent"] = progress_percent(pos.fraction, profile)
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


def _volumes_job_entities(
    job: ImsJob, pos: Position, now: datetime, profile: ProgressProfile, *, progress: bool
) -> dict[str, Any]:
    """``entities`` of an ``imsVolumesToSysDataImagesJob``: as the job page's example, ``sub_jobs_result``
    (one ``imsCopyVolumeToImageJob`` per image, the system-disk image first [inference: order]) and
    ``sub_jobs_list``; no top-level ``image_id`` (Table 2 does not list this job type for it).

    [inference] The sub-jobs appear when the job leaves INIT; while RUNNING the job carries
    ``process_percent`` as a create job does (on the ShowJobProgress path always, 0 / share / 100 / 0).
    """
    status = pos.name
    entities: dict[str, Any] = {}
    if progress:
        percent = {"INIT": 0.0, "SUCCESS": 100.0, "FAIL": 0.0}.get(status)
        entities["process_percent"] = progress_percent(pos.fraction, profile) if percent is None else percent
    elif status == "RUNNING":
        entities["process_percent"] = progress_percent(pos.fraction, profile)
    if status != "INIT":
        entities["sub_jobs_result"] = [_sub_job_body(job, sub, status, now) for sub in job.sub_jobs]
        entities["sub_jobs_list"] = [sub.id for sub in job.sub_jobs]
    return entities


def _members_job_entities(job: ImsJob, status: str) -> dict[str, Any]:
    """``entities`` of a sharing job, as the job page's examples: ``results``, one ``{"image_id", "status":
    "success"}`` per image for imsAddImageMembersJob and imsUpdateImageMembersJob, ``[]`` for
    imsDelImageMembersJob (Table 3: image_id "is returned only when the value of job_type is"
    imsAddImageMembersJob or imsUpdateImageMembersJob). [inference] ``results`` appear once the job ended;
    a failed job's results say ``failed``.
    """
    if status not in ("SUCCESS", "FAIL") or job.members is None:
        return {}
    if job.job_type == JOB_DEL_MEMBERS:
        return {"results": []}
    outcome = "success" if status == "SUCCESS" else "failed"
    return {"results": [{"image_id": i, "status": outcome} for i in job.members.images]}


def _sub_job_body(job: ImsJob, sub: ImsSubJob, status: str, now: datetime) -> dict[str, Any]:
    """One ``sub_jobs_result`` member (Table 4): it runs and ends with its parent [inference]; its entities
    carry ``image_name`` and ``image_id`` (Table 5) once it has ended, as a create job's do."""
    begin = job.timeline.entered_at("RUNNING") or job.created_at
    end = job.end_time(now)
    ended = status in ("SUCCESS", "FAIL")
    return {
        "job_id": sub.id,
        "job_type": SUB_JOB_VOLUME,
        "begin_time": fmt_millis(begin),
        "end_time": fmt_millis(end) if end else None,
        "status": status,
        "error_code": job.error_code if status == "FAIL" else None,
        "fail_reason": job.fail_reason if status == "FAIL" else None,
        "entities": {"image_name": sub.image_name, "image_id": sub.image_id} if ended else {},
    }


# ---- operations -------------------------------------------------------------------------------------------


def create_image(ims: Ims, call: Call) -> Reply:
    """``POST /v2/cloudimages/action``: ``{"job_id"}``. Two of the page's forms are emulated:

    - from an ECS (``instance_id``): its system-disk image (``data_images`` absent or ``[]``);
    - data-disk images from data disks (``data_images`` without ``instance_id``).

    Both together are refused: the note on ``data_images`` says "When you create a data disk image using a
    data disk, ... You cannot specify instance_id." [inference: the code] ``IMG.0001`` (the error-code page
    has none for this; ``IMG.0021`` "The resource type is unknown" is about an unknown source type).

    [inference] Validation order: body, unsupported modes, ``instance_id`` with ``data_images``, name,
    description, tags, instance_id, memory, enterprise project, then each ``data_images`` member (name,
    volume_id, description, tags); then the
    state's checks (the ECS or the data disks' ECS, name uniqueness, quota, concurrent-job cap).
    """
    body = _parse_json_body(call.raw)
    if set(body) - CREATE_FIELDS:
        raise ims_error("IMG.0001")  # [inference] an undocumented field (see CREATE_FIELDS)
    if any(body.get(k) is not None for k in UNSUPPORTED_CREATE_FIELDS):
        # Only the images from an ECS (system and data disks) are emulated, not file imports or the
        # system-disk image from a data disk (top-level volume_id).
        raise ims_error("IMG.0105")
    instance_id = body.get("instance_id")
    data_only = body.get("data_images") not in (None, [])
    if data_only and instance_id not in (None, ""):
        raise ims_error("IMG.0001")  # "You cannot specify instance_id." [inference: the code]
    # The data-disk-only form: "if other parameters (such as name, description, and tags) in this table have
    # values, the system uses the value of data_images". [inference] They are still checked as in the other
    # form (a malformed request stays malformed), then ignored.
    name = body.get("name")
    if not data_only or name is not None:
        name = validate_name(name)
    description = validate_description(body.get("description"))
    tags = validate_tags(body.get("tags"), body.get("image_tags"), ims.limits.max_image_tags)
    if not data_only:
        if instance_id is None or instance_id == "":
            raise ims_error("IMG.0012")
        if not isinstance(instance_id, str):
            raise ims_error("IMG.0001")
    min_ram, max_ram, eps = _memory_and_project(body)
    data_images = read_data_images(body.get("data_images"), ims.limits.max_image_tags)
    if data_only:
        job = ims.create_data_images(
            call.project_id, data_images=data_images, enterprise_project_id=eps, fault=call.job_fault
        )
        return Reply({"job_id": job.id})
    assert isinstance(name, str)
    assert isinstance(instance_id, str)
    job = ims.create_image(
        call.project_id,
        name=name,
        instance_id=instance_id,
        description=description,
        tags=tags,
        min_ram=min_ram,
        max_ram=max_ram,
        enterprise_project_id=eps,
        fault=call.job_fault,
    )
    return Reply({"job_id": job.id})


# creating_a_full-ecs_image.rst, its two request tables: from an ECS (vault_id), from a CSBS or CBR backup
# (backup_id, whole_image_type). [inference] A field outside this list is a misspelling: IMG.0001.
WHOLE_FIELDS = frozenset(
    {
        "name",
        "description",
        "tags",
        "image_tags",
        "instance_id",
        "vault_id",
        "backup_id",
        "whole_image_type",
        "enterprise_project_id",
        "max_ram",
        "min_ram",
    }
)
WHOLE_IMAGE_TYPES = ("CBR", "CSBS")


def _id_field(body: dict[str, Any], key: str) -> str | None:
    """An optional ID (String): absent, null or "" is None; another type is IMG.0001."""
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ims_error("IMG.0001")
    return value


def create_whole_image(ims: Ims, call: Call) -> Reply:
    """``POST /v1/cloudimages/wholeimages/action``: ``{"job_id"}`` of an ``imsCreateWholeImageByInstanceJob``.

    The page's two body forms: from an ECS (``instance_id``, ``vault_id``) and from a CSBS or CBR backup
    (``backup_id``, ``whole_image_type``). Only the first is emulated; the backup form is read and checked,
    then refused with ``IMG.0105`` "The operation is not supported." (CSBS and CBR backups are not
    emulated).

    [inference: the codes, the page gives none] Both ``instance_id`` and ``backup_id``: IMG.0001 (two forms
    in one body); neither: IMG.0012 "The ECS ID is not specified."; ``whole_image_type`` other than CBR or
    CSBS, or with ``instance_id`` (a field of the backup form only), or ``vault_id`` with ``backup_id`` (a
    field of the ECS form only): IMG.0001. ``vault_id`` "If a CBR backup is created, vault_id is mandatory":
    the local cloud plays a CBR region, so a missing ``vault_id`` is IMG.0001 [inference].

    [inference] Validation order: body, fields, form, name, description, tags, memory, enterprise project,
    the form's own fields; then the state's checks (ECS, vault, ECS state, name, quota, job cap).
    """
    body = _parse_json_body(call.raw)
    if set(body) - WHOLE_FIELDS:
        raise ims_error("IMG.0001")
    instance_id = _id_field(body, "instance_id")
    backup_id = _id_field(body, "backup_id")
    vault_id = _id_field(body, "vault_id")
    whole_type = body.get("whole_image_type")
    if instance_id is not None and backup_id is not None:
        raise ims_error("IMG.0001")
    if instance_id is None and backup_id is None:
        raise ims_error("IMG.0012")
    if whole_type is not None and (not isinstance(whole_type, str) or whole_type not in WHOLE_IMAGE_TYPES):
        raise ims_error("IMG.0001")
    name = validate_name(body.get("name"))
    description = validate_description(body.get("description"))
    tags = validate_tags(body.get("tags"), body.get("image_tags"), ims.limits.max_image_tags)
    min_ram, max_ram, eps = _memory_and_project(body)
    if backup_id is not None:
        if vault_id is not None:
            raise ims_error("IMG.0001")  # vault_id is a field of the ECS form only
        raise ims_error(
            "IMG.0105",
            "The operation is not supported. (local cloud: full-ECS images from CSBS or CBR backups are "
            "not emulated)",
        )
    if whole_type is not None:
        raise ims_error("IMG.0001")  # whole_image_type is a field of the backup form only
    if vault_id is None:
        raise ims_error("IMG.0001")  # a CBR region: "If a CBR backup is created, vault_id is mandatory."
    assert instance_id is not None
    job = ims.create_whole_image(
        call.project_id,
        name=name,
        instance_id=instance_id,
        vault_id=vault_id,
        description=description,
        tags=tags,
        min_ram=min_ram,
        max_ram=max_ram,
        enterprise_project_id=eps,
        fault=call.job_fault,
    )
    return Reply({"job_id": job.id})


def read_data_images(raw: Any, max_tags: int) -> list[DataImageSpec]:
    """``data_images`` (Table 1): each member's name, volume_id (mandatory), description, tags.

    Name, description and tags follow the image's own rules (IMG.0013/0002/0003, IMG.0004/0054,
    IMG.0115/0116). [inference] Not a list, a member that is not an object or has another field, or a
    volume_id that is not a string: IMG.0001; a missing or empty volume_id: IMG.0120 "The specified data disk
    ID is unavailable." (the page has no "not specified" code for disks, as IMG.0012 is for the ECS).
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ims_error("IMG.0001")
    specs: list[DataImageSpec] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - DATA_IMAGE_FIELDS:
            raise ims_error("IMG.0001")
        name = validate_name(item.get("name"))
        volume_id = item.get("volume_id")
        if volume_id is None or volume_id == "":
            raise ims_error("IMG.0120")
        if not isinstance(volume_id, str):
            raise ims_error("IMG.0001")
        description = validate_description(item.get("description"))
        tags = validate_tags(item.get("tags"), item.get("image_tags"), max_tags)
        specs.append(DataImageSpec(name, volume_id, description, tuple(tags)))
    return specs


def list_images(ims: Ims, call: Call) -> Reply:
    """``GET /v2/cloudimages`` with the filters, sorting and paging of the page (contract §3.3)."""
    q = call.query
    if set(q) - LIST_QUERY_KEYS:
        # [inference] A parameter the page does not list (a misspelling such as "imagetype" or
        # "tags") is IMG.0001 rather than ignored (which would list every image).
        raise ims_error("IMG.0001")
    # Attributes every local image has the same value of (see image_body); [inference] a filter on an
    # attribute the local images never carry (__system__cmkid, the other __support_* flags) matches none.
    nothing = any(
        key in q and q[key] != have for key, have in (("__os_bit", "64"), ("__support_kvm", "true"))
    ) or any(
        key.startswith(("__support_", "__system__")) and key != "__support_kvm" and key in q
        for key in LIST_QUERY_KEYS
    )
    if "container_format" in q and q["container_format"] != "bare":
        nothing = True
    if "__isregistered" in q and q["__isregistered"].lower() != "true":
        nothing = True
    member_status = q.get("member_status")
    if member_status is not None and member_status not in MEMBER_STATUSES:
        raise ims_error("IMG.0001")
    if member_status is not None and q.get("visibility") != "shared":
        # The page: "To use this parameter, set visibility to shared during the query." [inference: the code]
        raise ims_error("IMG.0001")
    imagetype = q.get("__imagetype")
    if imagetype is not None and imagetype not in ("gold", "private", "shared"):
        raise ims_error("IMG.0001")
    protected: bool | None = None
    if "protected" in q:
        want = q["protected"].lower()
        if want not in ("true", "false"):
            raise ims_error("IMG.0001")
        protected = want == "true"
    numbers: dict[str, int] = {}
    for key in ("min_disk", "min_ram"):
        if key in q:
            try:
                numbers[key] = int(q[key])
            except ValueError:
                raise ims_error("IMG.0001") from None
    tag: tuple[str, str] | None = None
    if "tag" in q:
        # The page (row "tag"): tags are queried as "tag=Key=Value", even those written "Key.Value".
        key, eq, value = q["tag"].partition("=")
        if not eq or not key:
            # [inference] a value without "=" (the old "Key.Value" spelling, or a bare key) is not a
            # tag query: 400 IMG.0001 "The request message format is invalid.", not an empty list.
            raise ims_error("IMG.0001")
        tag = (key, value)
    created = _time_filter(q["created_at"]) if "created_at" in q else None
    updated = _time_filter(q["updated_at"]) if "updated_at" in q else None
    eps = q.get("enterprise_project_id")
    whole_image: bool | None = None
    if "__whole_image" in q:
        # [inference] "true" or "false" (the page: a Boolean); another value matches no image, as for the
        # other documented filters on values no image has.
        want = q["__whole_image"].lower()
        whole_image = want == "true" if want in ("true", "false") else None
        nothing = nothing or want not in ("true", "false")
    filters = ImageFilters(
        imagetype=imagetype,
        name=q.get("name"),
        id=q.get("id"),
        status=q.get("status"),
        owner=q.get("owner"),
        visibility=q.get("visibility"),
        os_type=q.get("__os_type"),
        platform=q.get("__platform"),
        disk_format=q.get("disk_format"),
        enterprise_project_id=None if eps == "all_granted_eps" else eps,
        virtual_env_type=q.get("virtual_env_type"),
        protected=protected,
        min_disk=numbers.get("min_disk"),
        min_ram=numbers.get("min_ram"),
        tag=tag,
        created_at=created,
        updated_at=updated,
        member_status=member_status,
        matches_nothing=nothing,
        whole_image=whole_image,
    )

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
    found = ims.list_images(
        call.project_id, filters, sort_key=sort_key, sort_dir=sort_dir, marker=q.get("marker"), limit=limit
    )
    return Reply({"images": [image_body(i, call.project_id) for i in found]})


def show_image(ims: Ims, call: Call, image_id: str) -> Reply:
    """``GET /v2/images/{image_id}``: the image object, unwrapped."""
    return Reply(image_body(ims.show_image(call.project_id, image_id), call.project_id))


def delete_image(ims: Ims, call: Call, image_id: str) -> Reply:
    """``DELETE /v2/images/{image_id}`` -> 204, or the documented refusals.

    The optional body is ``{"delete_backup": <bool>}`` (the page's only request parameter).
    [inference] Any other body (not a JSON object, another field, a non-boolean) is IMG.0001.
    """
    delete_backup = False
    if call.raw.strip():
        try:
            body = json.loads(call.raw)
        except (ValueError, UnicodeDecodeError):
            raise ims_error("IMG.0001") from None
        if (
            not isinstance(body, dict)
            or set(body) - {"delete_backup"}
            or not isinstance(body.get("delete_backup", False), bool)
        ):
            raise ims_error("IMG.0001")
        delete_backup = body.get("delete_backup", False)
    ims.delete_image(call.project_id, image_id, delete_backup=delete_backup)
    return Reply(status=204)


def export_image(ims: Ims, call: Call, image_id: str) -> Reply:
    """``POST /v1/cloudimages/{image_id}/file``: ``{"job_id"}`` of an ``imsNativeExportImageJob``.

    The checks interleave the image and the body: the image must exist before the body is read, and a
    public or another project's image is refused before the bucket is looked at.
    """
    project_id = call.project_id
    ims.show_image(project_id, image_id)
    body = _parse_json_body(call.raw)
    if set(body) - EXPORT_FIELDS:
        raise ims_error("IMG.0001")  # [inference] an undocumented field (see EXPORT_FIELDS)
    ims.check_exportable(project_id, image_id)
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
    job = ims.export_image(
        project_id,
        image_id,
        bucket=bucket,
        file=file_name,
        file_format=file_format,
        quick=quick,
        fault=call.job_fault,
    )
    return Reply({"job_id": job.id})


def show_quota(ims: Ims, call: Call) -> Reply:
    """``GET /v1/cloudimages/quota``: one ``image`` resource."""
    quota = ims.show_quota(call.project_id)
    resource = {"type": "image", "used": quota.used, "quota": quota.quota, "min": 1, "max": 1000}
    return Reply({"quotas": {"resources": [resource]}})


def show_job(ims: Ims, call: Call, project_id: str, job_id: str) -> Reply:
    """``GET /v1/{project_id}/jobs/{job_id}`` on the IMS endpoint."""
    job = ims.show_job(project_id, job_id)
    return Reply(job_body(job, ims.clock.now(), ims.timing.progress_profile))


def show_job_progress(ims: Ims, call: Call, job_id: str) -> Reply:
    """Huawei Cloud's job API (ShowJobProgress): no project id in the path, the token's project."""
    job = ims.show_job(call.project_id, job_id)
    return Reply(job_body(job, ims.clock.now(), ims.timing.progress_profile, progress=True))


def _id_list(value: Any) -> list[str]:
    """A mandatory ``Array of strings`` of IDs. [inference] Missing, not a list, empty, or a member that is
    not a non-empty string: IMG.0001 (the pages name no code); a repeated ID counts once."""
    if not isinstance(value, list) or not value:
        raise ims_error("IMG.0001")
    if not all(isinstance(v, str) and v for v in value):
        raise ims_error("IMG.0001")
    return list(dict.fromkeys(value))


def _members_body(call: Call) -> tuple[list[str], list[str]]:
    body = _parse_json_body(call.raw)
    if set(body) - MEMBERS_FIELDS:
        raise ims_error("IMG.0001")  # [inference] a field the request table does not list
    return _id_list(body.get("images")), _id_list(body.get("projects"))


def add_members(ims: Ims, call: Call) -> Reply:
    """``POST /v1/cloudimages/members`` ``{"images": [...], "projects": [...]}`` -> 200 ``{"job_id"}``."""
    images, projects = _members_body(call)
    job = ims.add_members(call.project_id, images, projects, fault=call.job_fault)
    return Reply({"job_id": job.id})


def delete_members(ims: Ims, call: Call) -> Reply:
    """``DELETE /v1/cloudimages/members`` with the same body -> 200 ``{"job_id"}``."""
    images, projects = _members_body(call)
    job = ims.delete_members(call.project_id, images, projects, fault=call.job_fault)
    return Reply({"job_id": job.id})


def update_members(ims: Ims, call: Call) -> Reply:
    """``PUT /v1/cloudimages/members`` ``{"images", "project_id", "status"[, "vault_id"]}``.

    [inference] ``vault_id`` (for full-ECS images from CBR backups, which the local cloud does not make) is
    accepted as a string and ignored; another ``status`` value or a missing ``project_id``: IMG.0001.
    """
    body = _parse_json_body(call.raw)
    if set(body) - UPDATE_MEMBERS_FIELDS:
        raise ims_error("IMG.0001")
    images = _id_list(body.get("images"))
    project_id = body.get("project_id")
    status = body.get("status")
    if not isinstance(project_id, str) or not project_id or status not in ("accepted", "rejected"):
        raise ims_error("IMG.0001")
    if "vault_id" in body and not isinstance(body["vault_id"], str):
        raise ims_error("IMG.0001")
    job = ims.update_members(call.project_id, images, project_id, status, fault=call.job_fault)
    return Reply({"job_id": job.id})


def member_body(member: Member, image_id: str) -> dict[str, Any]:
    """One member as the Glance members page's example shows it."""
    return {
        "status": member.status,
        "created_at": fmt_seconds(member.created_at),
        "updated_at": fmt_seconds(member.updated_at),
        "image_id": image_id,
        "member_id": member.project_id,
        "schema": "/v2/schemas/member",
    }


def list_members(ims: Ims, call: Call, image_id: str) -> Reply:
    """``GET /v2/images/{image_id}/members`` -> ``{"members": [...], "schema": "/v2/schemas/members"}``."""
    members = ims.list_members(call.project_id, image_id)
    return Reply({"members": [member_body(m, image_id) for m in members], "schema": "/v2/schemas/members"})


def _replication_attributes(image: Image) -> dict[str, Any]:
    """What replication writes on an image (image_attributes.rst): an encrypted image's ``__system__cmkid``
    and ``__system_encrypted`` ``"1"`` [inference: not on these pages; Huawei Cloud's image attributes name
    it, "1" encrypted]; a copy's source as its ``__data_origin`` [inference: "image,<id>", in the form of an
    ECS image's "instance,<id>"]."""
    extra: dict[str, Any] = {}
    if image.cmk_id:
        extra["__system_encrypted"] = "1"
        extra["__system__cmkid"] = image.cmk_id
    if image.copied_from:
        extra["__data_origin"] = f"image,{image.copied_from}"
    return extra


# replicating_an_image_within_a_region.rst, request table.
COPY_FIELDS = frozenset({"name", "description", "cmk_id", "enterprise_project_id"})
UUID_FORM = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
# adding_or_deleting_image_tags_in_a_batch.rst, request tables.
TAG_ACTION_FIELDS = frozenset({"tags", "action"})
TAG_FIELDS = frozenset({"key", "value"})


def copy_image(ims: Ims, call: Call, image_id: str) -> Reply:
    """``POST /v1/cloudimages/{image_id}/copy`` -> 200 ``{"job_id"}`` of an ``imsCopyImageInRegionJob``.

    The body is the page's four fields only ([inference] another field, or a field of the wrong type:
    IMG.0001, as for the other IMS requests): ``name`` (mandatory, the image name rules: IMG.0013 / 0002 /
    0003), ``description`` (IMG.0004 / 0054), ``cmk_id`` (blank: not encrypted; [inference] a key ID is a
    UUID, as in the page's example, anything else IMG.0095 "The KMS key does not exist."),
    ``enterprise_project_id`` ("0" or blank: the default project, or a UUID; [inference] anything else
    IMG.0001). As for export, the image must exist before the body is read (its 404); the page's
    constraints and the state's checks follow (:meth:`Ims.copy_image`).
    """
    ims.show_image(call.project_id, image_id)
    body = _parse_json_body(call.raw)
    if set(body) - COPY_FIELDS:
        raise ims_error("IMG.0001")
    name = validate_name(body.get("name"))
    description = validate_description(body.get("description"))
    cmk_id = body.get("cmk_id")
    if cmk_id is not None and not isinstance(cmk_id, str):
        raise ims_error("IMG.0001")
    if cmk_id and not UUID_FORM.match(cmk_id):
        raise ims_error("IMG.0095")
    eps = body.get("enterprise_project_id")
    if eps is not None and not isinstance(eps, str):
        raise ims_error("IMG.0001")
    if eps and eps != "0" and not UUID_FORM.match(eps):
        raise ims_error("IMG.0001")
    job = ims.copy_image(
        call.project_id,
        image_id,
        name=name,
        description=description,
        cmk_id=cmk_id or None,
        enterprise_project_id=eps or "0",
        fault=call.job_fault,
    )
    return Reply({"job_id": job.id})


def update_image_tags(ims: Ims, call: Call, project_id: str, image_id: str) -> Reply:
    """``POST /v2/{project_id}/images/{image_id}/tags/action`` ``{"tags": [{"key", "value"}], "action"}``
    -> 204.

    The page's rules: ``action`` ``create`` or ``delete`` (case sensitive); keys unique in the request; to
    create, a key of 1-36 characters and a value (mandatory, may be empty) of at most 43; to delete, a key of
    1-127 characters and an optional value of at most 255, characters not checked. [inference: the codes] a
    tag breaking these rules: IMG.0115 "The image tag is invalid."; anything else malformed (another field,
    a wrong type, no tags): IMG.0001.
    """
    body = _parse_json_body(call.raw)
    action = body.get("action")
    raw_tags = body.get("tags")
    if set(body) - TAG_ACTION_FIELDS or action not in ("create", "delete"):
        raise ims_error("IMG.0001")
    if not isinstance(raw_tags, list) or not raw_tags:
        raise ims_error("IMG.0001")
    tags: list[tuple[str, str | None]] = []
    for item in raw_tags:
        if not isinstance(item, dict) or set(item) - TAG_FIELDS:
            raise ims_error("IMG.0001")
        key, value = item.get("key"), item.get("value")
        if not isinstance(key, str) or (value is not None and not isinstance(value, str)):
            raise ims_error("IMG.0001")
        key_max, value_max = (36, 43) if action == "create" else (127, 255)
        if not key.strip(" ") or len(key) > key_max or (value is not None and len(value) > value_max):
            raise ims_error("IMG.0115")
        if action == "create":
            if value is None:
                raise ims_error("IMG.0115")  # "The value cannot be left blank but can be an empty string."
            _check_tag(key, value, charset=False)
        if any(key == k for k, _ in tags):
            raise ims_error("IMG.0115")  # "The keys of multiple tags in the request body must be unique."
        tags.append((key, value))
    ims.update_image_tags(project_id, image_id, action, tags)
    return Reply(status=204)


ROUTES: tuple[Route, ...] = (
    Route("ims", "POST", "/v2/cloudimages/action", "ims.create_image", create_image),
    Route("ims", "GET", "/v2/cloudimages", "ims.list_images", list_images),
    Route("ims", "GET", "/v2/images/{image_id}", "ims.show_image", show_image),
    Route("ims", "DELETE", "/v2/images/{image_id}", "ims.delete_image", delete_image),
    Route("ims", "POST", "/v1/cloudimages/{image_id}/file", "ims.export_image", export_image),
    Route("ims", "GET", "/v1/cloudimages/quota", "ims.show_quota", show_quota),
    Route("ims", "POST", "/v1/cloudimages/members", "ims.add_members", add_members),
    Route("ims", "DELETE", "/v1/cloudimages/members", "ims.delete_members", delete_members),
    Route("ims", "PUT", "/v1/cloudimages/members", "ims.update_members", update_members),
    Route("ims", "GET", "/v2/images/{image_id}/members", "ims.list_members", list_members),
    # Shared with ECS on one base URL: app.py serves the bare path and tells the two apart by the job id.
    Route("ims", "GET", "/v1/{project_id}/jobs/{job_id}", "ims.show_job", show_job, shared=False),
    Route("ims", "GET", "/v1/cloudimages/job/{job_id}", "ims.show_job_progress", show_job_progress),
    Route("ims", "POST", "/v1/cloudimages/{image_id}/copy", "ims.copy_image", copy_image),
    Route(
        "ims",
        "POST",
        "/v2/{project_id}/images/{image_id}/tags/action",
        "ims.update_image_tags",
        update_image_tags,
    ),
    Route("ims", "POST", "/v1/cloudimages/wholeimages/action", "ims.create_whole_image", create_whole_image),
)
