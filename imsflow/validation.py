"""The IMS field rules, and imsflow's one vocabulary of parameter fields (IMS API reference: Image
Attributes, Image Tag Format, Creating an Image, Exporting an Image).

Each ``check_*`` returns the value (possibly normalised) or raises ``InvalidRequestError`` naming the
field and the rule in words; ``parse_tag`` turns a ``key=value`` parameter into an IMS ``image_tags`` pair.
The request models call them, the CLI options call them (``cli.app.checked``), and the flow forms use the
typed fields below (``InstanceId``, ``ImageId``, ``ImageName``, ``ImageDescription``, ``TagParam``,
``BucketUrl``, ``CredentialsBlock``): each is a pydantic ``Annotated`` type whose JSON-schema pattern (the
Prefect UI form) accepts what its check accepts, and whose validator runs first, so an error states the
rule rather than the regex.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from imsflow.errors import InvalidRequestError

__all__ = [
    "AGE_PATTERN",
    "AGE_RULE",
    "BLOCK_NAME_OR_EMPTY_PATTERN",
    "BLOCK_NAME_PATTERN",
    "BLOCK_NAME_RULE",
    "BUCKET_URL_PATTERN",
    "BUCKET_URL_RULE",
    "DESCRIPTION_PATTERN",
    "DESCRIPTION_RULE",
    "EXPORT_FORMATS",
    "IMAGE_KINDS",
    "IMAGE_TAG_RULE",
    "MAX_IMAGE_TAGS",
    "NAME_PATTERN",
    "NAME_RULE",
    "PROJECT_ID_PATTERN",
    "PROJECT_ID_RULE",
    "TAG_COUNT_RULE",
    "TAG_PARAM_PATTERN",
    "TAG_PARAM_RULE",
    "TAG_PATTERN",
    "TAG_RULE",
    "UUID_PATTERN",
    "UUID_RULE",
    "BucketUrl",
    "CredentialsBlock",
    "ImageDescription",
    "ImageId",
    "ImageKind",
    "ImageKindParam",
    "ImageName",
    "InstanceId",
    "MaxAge",
    "ProjectId",
    "TagParam",
    "VaultId",
    "VolumeId",
    "check_age",
    "check_block_name",
    "check_bucket_url",
    "check_description",
    "check_enterprise_project_id",
    "check_export_format",
    "check_image_kind",
    "check_image_name",
    "check_image_tag",
    "check_project_id",
    "check_tag",
    "check_tag_count",
    "check_tag_filter",
    "check_tag_param",
    "check_tags",
    "check_tags_exclusive",
    "check_uuid",
    "empty_is_none",
    "form_config",
    "parse_age",
    "parse_dotted_tag",
    "parse_tag",
]

NAME_RULE = (
    "1 to 128 characters: letters, digits, hyphens (-), periods (.), underscores (_) and spaces; "
    "must not start or end with a space"
)
DESCRIPTION_RULE = (
    "at most 1024 characters; no line breaks (carriage return, line feed) and no angle brackets (< >)"
)
TAG_RULE = (
    'a tag is "key.value": key 1 to 36 characters, value 0 to 43 characters, '
    "only letters, digits, underscores (_) and hyphens (-)"
)
TAG_PARAM_RULE = (
    'a tag is "key=value": key 1 to 36 characters, value 0 to 43 characters, '
    "only letters, digits, underscores (_) and hyphens (-)"
)
TAG_FILTER_RULE = "a tag filter is Key=Value (build it with tag_filter)"
IMAGE_TAG_RULE = "key 1 to 36 characters and value 0 to 43 characters (surrounding spaces are trimmed)"
TAGS_EXCLUSIVE_RULE = "use either tags or image_tags, not both (not even an empty list of one)"
MAX_IMAGE_TAGS = 10
TAG_COUNT_RULE = f"at most {MAX_IMAGE_TAGS} tags per image (a repeated key counts once)"
UUID_RULE = "must be a UUID such as 877a2cda-ba63-4e1e-b95f-e67e48b6129a"
EXPORT_FORMATS = ("qcow2", "vhd", "zvhd", "vmdk")
BUCKET_URL_RULE = 'must be "<bucket>:<file>" (an OBS bucket name and a file name, no spaces)'
AGE_RULE = "an age such as 26h, 90m, 30d or 2w (m minutes, h hours, d days, w weeks; a number alone is days)"
BLOCK_NAME_RULE = "a block name: lowercase letters, digits and hyphens (-), starting with a letter or digit"

# The patterns are also used as JSON-schema patterns (Prefect UI forms, Rust and JS regex engines), so
# they avoid look-arounds: "no space at either end" is spelled out as first/last character classes.
NAME_PATTERN = r"^[A-Za-z0-9._-]([A-Za-z0-9._ -]{0,126}[A-Za-z0-9._-])?$"
# A line feed is refused too: IMS documents only "no carriage returns", but a line break in either form is
# refused by the local cloud and costs nothing to avoid.
DESCRIPTION_PATTERN = r"^[^\r\n<>]{0,1024}$"
TAG_PATTERN = r"^[A-Za-z0-9_-]{1,36}\.[A-Za-z0-9_-]{0,43}$"
# The same tag as flow parameters and CLI options take it, "key=value" (it becomes an image_tags entry).
TAG_PARAM_PATTERN = r"^[A-Za-z0-9_-]{1,36}=[A-Za-z0-9_-]{0,43}$"
# A project ID as IAM writes it (the sharing pages' example edc89b490d7d4392898e19b2deb34797): 32 hex digits.
PROJECT_ID_PATTERN = r"^[0-9a-f]{32}$"
PROJECT_ID_RULE = "32 lowercase hex digits (a project ID, not a name)"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Exporting an Image: bucket_url is "<bucket name>:<file name>". OBS bucket names: 3-63 lowercase letters,
# digits, hyphens and periods, a letter or digit at either end; IMG.0175: no spaces in file names.
BUCKET_URL_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]:[^ ]+$"
# Prefect block names (the ImsflowCredentials block a flow run names): lowercase letters, digits, hyphens.
BLOCK_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# The credentials_block parameter of a form: a block name, or empty for "none".
BLOCK_NAME_OR_EMPTY_PATTERN = r"^([a-z0-9][a-z0-9-]*)?$"

#: An age: a positive number and a unit (m, min, h, d, w; none: days), as ``--max-age`` and the forms take it.
AGE_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)?\s*$"
_NAME = re.compile(NAME_PATTERN)
_DESCRIPTION = re.compile(DESCRIPTION_PATTERN)
_TAG = re.compile(TAG_PATTERN)
_UUID = re.compile(UUID_PATTERN)
_PROJECT_ID = re.compile(PROJECT_ID_PATTERN)
_BUCKET_URL = re.compile(BUCKET_URL_PATTERN)
_TAG_PARAM = re.compile(TAG_PARAM_PATTERN)
_BLOCK_NAME = re.compile(BLOCK_NAME_PATTERN)
_AGE = re.compile(AGE_PATTERN)
_AGE_UNIT_SECONDS = {"m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, None: 86400.0, "w": 7 * 86400.0}

TAG_KEY_MAX = 36
TAG_VALUE_MAX = 43


def _matching(pattern: re.Pattern[str], value: str, field: str, rule: str) -> str:
    """``value`` if the whole of it matches ``pattern``, else the field's error stating ``rule`` in words."""
    if not pattern.fullmatch(value):
        raise InvalidRequestError(field, value, rule)
    return value


def check_image_name(name: str, field: str = "name") -> str:
    """An image name as IMS accepts it."""
    return _matching(_NAME, name, field, NAME_RULE)


def check_description(description: str, field: str = "description") -> str:
    """An image description as IMS accepts it."""
    return _matching(_DESCRIPTION, description, field, DESCRIPTION_RULE)


def check_tag(tag: str, field: str = "tags") -> str:
    """One ``key.value`` tag (the period separates key and value; neither may contain one)."""
    return _matching(_TAG, tag, field, TAG_RULE)


def parse_dotted_tag(tag: str, field: str = "tags") -> tuple[str, str]:
    """A ``key.value`` tag (the IMS ``tags`` form) as ``(key, value)``."""
    key, _, value = check_tag(tag, field).partition(".")
    return key, value


def check_tag_param(tag: str, field: str = "tags") -> str:
    """One ``key=value`` tag as flow parameters and CLI options take it."""
    return _matching(_TAG_PARAM, tag, field, TAG_PARAM_RULE)


def parse_tag(tag: str, field: str = "tags") -> tuple[str, str]:
    """A ``key=value`` parameter as ``(key, value)``, the pair of an IMS ``image_tags`` entry."""
    key, _, value = check_tag_param(tag, field).partition("=")
    return key, value


def check_tag_filter(value: str, field: str = "tag") -> str:
    """The ``tag`` filter of ``GET /v2/cloudimages``: ``Key=Value`` for any tag an image may carry
    (also one created as ``Key.Value``), so only the form is checked, not the tag rules."""
    key, equals, _ = value.partition("=")
    if not (key and equals):
        raise InvalidRequestError(field, value, TAG_FILTER_RULE)
    return value


def check_tags(tags: Iterable[str], field: str = "tags") -> list[str]:
    """A list of ``key.value`` tags."""
    return [check_tag(tag, field) for tag in tags]


def check_image_tag(key: str, value: str, field: str = "image_tags") -> tuple[str, str]:
    """One ``{"key", "value"}`` tag, trimmed the way IMS trims it."""
    key, value = key.strip(" "), value.strip(" ")
    if not 1 <= len(key) <= TAG_KEY_MAX or len(value) > TAG_VALUE_MAX:
        raise InvalidRequestError(field, f"{key}={value}", IMAGE_TAG_RULE)
    return key, value


def check_tags_exclusive(tags: Sequence[object] | None, image_tags: Sequence[object] | None) -> None:
    """IMS takes ``tags`` or ``image_tags``, never both: both fields sent, even one empty, is refused."""
    if tags is not None and image_tags is not None:
        raise InvalidRequestError("tags", "tags and image_tags", TAGS_EXCLUSIVE_RULE)


def check_tag_count(keys: Iterable[str], field: str = "tags") -> None:
    """At most ``MAX_IMAGE_TAGS`` distinct keys (IMS merges a repeated key into one tag)."""
    distinct = set(keys)
    if len(distinct) > MAX_IMAGE_TAGS:
        raise InvalidRequestError(field, f"{len(distinct)} tags", TAG_COUNT_RULE)


def check_uuid(value: str, field: str) -> str:
    """A resource id in the canonical UUID form (ECS ids, image ids)."""
    return _matching(_UUID, value, field, UUID_RULE)


def check_project_id(value: str, field: str = "project_id") -> str:
    """A project ID (the projects an image is shared with, the receiving project)."""
    return _matching(_PROJECT_ID, value, field, PROJECT_ID_RULE)


def check_enterprise_project_id(value: str, field: str = "enterprise_project_id") -> str:
    """``"0"`` (the default enterprise project) or a UUID."""
    if value == "0":
        return value
    try:
        return check_uuid(value, field)
    except InvalidRequestError:
        raise InvalidRequestError(field, value, '"0" (default enterprise project) or a UUID') from None


def check_bucket_url(value: str, field: str = "bucket_url") -> str:
    """An OBS target ``bucket:file``."""
    return _matching(_BUCKET_URL, value, field, BUCKET_URL_RULE)


def check_block_name(value: str, field: str = "credentials_block") -> str:
    """The name of a Prefect block (the ImsflowCredentials block a flow run uses)."""
    return _matching(_BLOCK_NAME, value, field, BLOCK_NAME_RULE)


def parse_age(value: str, field: str = "max_age") -> timedelta:
    """An age such as ``26h``, ``90m``, ``30d`` or ``2w`` (a number alone is days), more than zero."""
    match = _AGE.match(value)
    if match is None or float(match.group(1)) <= 0:
        raise InvalidRequestError(field, value, AGE_RULE)
    return timedelta(seconds=float(match.group(1)) * _AGE_UNIT_SECONDS[match.group(2)])


def check_age(value: str, field: str = "max_age") -> str:
    """:func:`parse_age`'s rule; the value unchanged."""
    parse_age(value, field)
    return value


def check_export_format(value: str, field: str = "file_format") -> str:
    """An export file format IMS supports."""
    if value not in EXPORT_FORMATS:
        raise InvalidRequestError(field, value, f"must be one of {', '.join(EXPORT_FORMATS)}")
    return value


# ------------------------------------------------------------------------------------------------ image kinds

#: What an image run makes of one ECS. A new kind is added here (its name, its words for the operator), then
#: taught to ``tasks.image.plan_images`` (what it asks IMS for); forms, CLI options and keys follow.
ImageKind = Literal["system", "system-and-data", "full-ecs"]
IMAGE_KINDS: dict[str, str] = {
    "system": "one image of the ECS's system disk",
    "system-and-data": "an image of the system disk, then one data-disk image per data disk (two requests)",
    "full-ecs": "one full-ECS image of the system disk and every data disk together, backed up into a CBR "
    "vault (the ECS may keep running; such an image cannot be exported)",
}
assert set(IMAGE_KINDS) == set(get_args(ImageKind)), "every kind has its words"


def check_image_kind(value: str, field: str = "kind") -> str:
    """One of :data:`IMAGE_KINDS`."""
    if value not in IMAGE_KINDS:
        raise InvalidRequestError(field, value, f"must be one of {', '.join(IMAGE_KINDS)}")
    return value


# ------------------------------------------------------------------------------ the typed parameter fields


def _checked(check: Callable[[str, str], str], field: str) -> BeforeValidator:
    """Run ``check`` before the schema constraints, so that an error states the rule, not a pattern."""

    def run(value: object) -> object:
        return check(value, field) if isinstance(value, str) else value

    return BeforeValidator(run)


#: An ECS ID. Use sites add their own description with ``Annotated[InstanceId, Field(description=...)]``.
InstanceId = Annotated[
    str,
    Field(title="Instance ID", description="ID (UUID) of an ECS.", pattern=UUID_PATTERN),
    _checked(check_uuid, "instance_id"),
]
#: An image ID.
ImageId = Annotated[
    str,
    Field(title="Image ID", description="ID (UUID) of a private image.", pattern=UUID_PATTERN),
    _checked(check_uuid, "image_id"),
]
#: A project ID (the project an image is shared with).
ProjectId = Annotated[
    str,
    Field(title="Project ID", description=f"A project ID: {PROJECT_ID_RULE}.", pattern=PROJECT_ID_PATTERN),
    _checked(check_project_id, "project_id"),
]
#: An image name as IMS accepts it.
ImageName = Annotated[
    str,
    Field(
        title="Image name",
        description=f"Name of the new image: {NAME_RULE}.",
        min_length=1,
        max_length=128,
        pattern=NAME_PATTERN,
    ),
    _checked(check_image_name, "name"),
]
#: An image description as IMS accepts it.
ImageDescription = Annotated[
    str,
    Field(
        title="Image description",
        description=f"Shown with the image in the console; {DESCRIPTION_RULE}.",
        max_length=1024,
        pattern=DESCRIPTION_PATTERN,
    ),
    _checked(check_description, "description"),
]
#: The image kind of a run (a select in the form).
ImageKindParam = Annotated[
    ImageKind,
    Field(
        title="Image kind",
        description="What to image: "
        + "; ".join(f"{kind}: {words}" for kind, words in IMAGE_KINDS.items())
        + ". Data-disk images are named after the image and the disk's device (web-1-20261127-vdb).",
    ),
    _checked(check_image_kind, "kind"),
]
#: A volume (EVS disk) ID, such as a data disk of an ECS.
VolumeId = Annotated[
    str,
    Field(title="Volume ID", description="ID (UUID) of a data disk of the ECS.", pattern=UUID_PATTERN),
    _checked(check_uuid, "data_volumes"),
]
#: The ID of a CBR vault (a full-ECS image of an ECS is backed up into it: ``vault_id``).
VaultId = Annotated[
    str,
    Field(
        title="CBR vault ID",
        description="ID (UUID) of the CBR vault the ECS is backed up into for a full-ECS image.",
        pattern=UUID_PATTERN,
    ),
    _checked(check_uuid, "vault_id"),
]
#: An age (``parse_age`` makes it a ``timedelta``). Use sites add their title and description.
MaxAge = Annotated[str, Field(pattern=AGE_PATTERN), _checked(check_age, "max_age")]
#: One tag as ``key=value`` (``parse_tag`` makes it an ``image_tags`` pair).
TagParam = Annotated[str, Field(pattern=TAG_PARAM_PATTERN), _checked(check_tag_param, "tags")]
#: The OBS target of an export, ``<bucket>:<file>``.
BucketUrl = Annotated[
    str,
    Field(
        title="OBS target",
        description=f"Where the file goes, as bucket:file, e.g. my-images:web-1.qcow2 ({BUCKET_URL_RULE}); "
        "a Standard bucket in the image's region.",
        pattern=BUCKET_URL_PATTERN,
    ),
    _checked(check_bucket_url, "bucket_url"),
]


def _block_name_or_empty(value: object) -> object:
    # None (a Python caller's "no block") and "" (an empty form field) are the same: no block, as "".
    if value is None or value == "":
        return ""
    return check_block_name(value, "credentials_block") if isinstance(value, str) else value


#: The ``credentials_block`` parameter of every flow: the name of an imsflow-credentials block, or empty.
#:
#: The value is ``""`` when no block is named, whether the caller passed ``None``, ``""`` or nothing
#: (``validate_default``), so a flow hands on ``""``, never ``None``: a deployment's form (and its parameter
#: schema) has a plain text field with ``""`` as default, and no ``str | None`` switch. The JSON schema is
#: set here whole (the flow's parameter title and description are Prefect's, overridden by the extras).
CredentialsBlock = Annotated[
    str | None,
    BeforeValidator(_block_name_or_empty),
    WithJsonSchema({"type": "string", "pattern": BLOCK_NAME_OR_EMPTY_PATTERN}),
    Field(
        validate_default=True,
        json_schema_extra={
            "title": "Credentials block",
            "description": "Name of the imsflow-credentials block (Blocks in the Prefect UI) with the cloud "
            "account to use. Leave empty to use the IMSFLOW_* settings of the machine that runs the flow.",
            "default": "",
        },
    ),
]


# ------------------------------------------------------------------------------------ a flow's parameter form


def empty_is_none(value: object) -> object:
    """A form's empty value (``""``, and ``0`` for a count where 0 means "no rule") as ``None``: not set."""
    return None if value == "" else value


def _without_null(prop: dict[str, Any]) -> None:
    branches = prop.get("anyOf")
    if isinstance(branches, list):
        rest = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
        if len(rest) < len(branches):
            del prop["anyOf"]
            if len(rest) == 1 and isinstance(rest[0], dict):
                for key, val in rest[0].items():
                    prop.setdefault(key, val)
            else:
                prop["anyOf"] = rest
    if "default" in prop and prop["default"] is None:
        del prop["default"]


def form_config(title: str, description: str) -> ConfigDict:
    """The ``model_config`` of a flow's parameter model: the form a person fills in the Prefect UI.

    The model's schema gets ``title`` and ``description`` (for the person, not the docstring), and every
    optional field is its type alone: no ``null`` branch (the UI's ``str | None`` switch) and no ``null``
    default. An empty field is left out of the run's parameters, so the field's Python default (``None``:
    not set) applies; the Prefect server still accepts ``null`` for such a field (it allows ``null`` for a
    property that is neither required nor defaulted), so Python callers and chunk runs may send it.
    """

    def update(schema: dict[str, Any]) -> None:
        schema["title"] = title
        schema["description"] = description
        properties = schema.get("properties", {})
        for prop in properties.values():
            if isinstance(prop, dict):
                _without_null(prop)

    return ConfigDict(title=title, json_schema_extra=update)
