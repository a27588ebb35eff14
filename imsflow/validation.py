"""The IMS field rules as pure functions (IMS API reference: Image Attributes, Image Tag Format,
Creating an Image, Exporting an Image).

Each ``check_*`` returns the value (possibly normalised) or raises ``InvalidRequestError`` naming the
field and the rule; the request models call them, and so can the CLI before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from imsflow.errors import InvalidRequestError

__all__ = [
    "BUCKET_URL_PATTERN",
    "BUCKET_URL_RULE",
    "DESCRIPTION_PATTERN",
    "DESCRIPTION_RULE",
    "EXPORT_FORMATS",
    "IMAGE_TAG_RULE",
    "MAX_IMAGE_TAGS",
    "NAME_PATTERN",
    "NAME_RULE",
    "TAG_COUNT_RULE",
    "TAG_PARAM_PATTERN",
    "TAG_PATTERN",
    "TAG_RULE",
    "UUID_PATTERN",
    "UUID_RULE",
    "check_bucket_url",
    "check_description",
    "check_enterprise_project_id",
    "check_export_format",
    "check_image_name",
    "check_image_tag",
    "check_tag",
    "check_tag_count",
    "check_tags",
    "check_tags_exclusive",
    "check_uuid",
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
IMAGE_TAG_RULE = "key 1 to 36 characters and value 0 to 43 characters (surrounding spaces are trimmed)"
TAGS_EXCLUSIVE_RULE = "use either tags or image_tags, not both (not even an empty list of one)"
MAX_IMAGE_TAGS = 10
TAG_COUNT_RULE = f"at most {MAX_IMAGE_TAGS} tags per image (a repeated key counts once)"
UUID_RULE = "must be a UUID such as 877a2cda-ba63-4e1e-b95f-e67e48b6129a"
EXPORT_FORMATS = ("qcow2", "vhd", "zvhd", "vmdk")
BUCKET_URL_RULE = 'must be "<bucket>:<file>" (an OBS bucket name and a file name, no spaces)'

# The patterns are also used as JSON-schema patterns (Prefect UI forms, Rust and JS regex engines), so
# they avoid look-arounds: "no space at either end" is spelled out as first/last character classes.
NAME_PATTERN = r"^[A-Za-z0-9._-]([A-Za-z0-9._ -]{0,126}[A-Za-z0-9._-])?$"
# A line feed is refused too: IMS documents only "no carriage returns", but a line break in either form is
# refused by the local cloud and costs nothing to avoid.
DESCRIPTION_PATTERN = r"^[^\r\n<>]{0,1024}$"
TAG_PATTERN = r"^[A-Za-z0-9_-]{1,36}\.[A-Za-z0-9_-]{0,43}$"
# The same tag as flow parameters and CLI options take it, "key=value" (it becomes an image_tags entry).
TAG_PARAM_PATTERN = r"^[A-Za-z0-9_-]{1,36}=[A-Za-z0-9_-]{0,43}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# OBS bucket names: 3-63 lowercase letters, digits, hyphens and periods; IMG.0175: no spaces in file names.
BUCKET_URL_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]:[^ ]+$"

_NAME = re.compile(NAME_PATTERN)
_DESCRIPTION = re.compile(DESCRIPTION_PATTERN)
_TAG = re.compile(TAG_PATTERN)
_UUID = re.compile(UUID_PATTERN)
_BUCKET_URL = re.compile(BUCKET_URL_PATTERN)

TAG_KEY_MAX = 36
TAG_VALUE_MAX = 43


def check_image_name(name: str, field: str = "name") -> str:
    """An image name as IMS accepts it."""
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(field, name, NAME_RULE)
    return name


def check_description(description: str, field: str = "description") -> str:
    """An image description as IMS accepts it."""
    if not _DESCRIPTION.fullmatch(description):
        raise InvalidRequestError(field, description, DESCRIPTION_RULE)
    return description


def check_tag(tag: str, field: str = "tags") -> str:
    """One ``key.value`` tag (the period separates key and value; neither may contain one)."""
    if not _TAG.fullmatch(tag):
        raise InvalidRequestError(field, tag, TAG_RULE)
    return tag


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
    if not _UUID.fullmatch(value):
        raise InvalidRequestError(field, value, UUID_RULE)
    return value


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
    if not _BUCKET_URL.fullmatch(value):
        raise InvalidRequestError(field, value, BUCKET_URL_RULE)
    return value


def check_export_format(value: str, field: str = "file_format") -> str:
    """An export file format IMS supports."""
    if value not in EXPORT_FORMATS:
        raise InvalidRequestError(field, value, f"must be one of {', '.join(EXPORT_FORMATS)}")
    return value
