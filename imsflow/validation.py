"""The IMS field rules as pure functions (IMS API reference: Image Attributes, Image Tag Format,
Creating an Image, Exporting an Image).

Each ``check_*`` returns the value (possibly normalised) or raises ``InvalidRequestError`` naming the
field and the rule; the request models call them, and so can the CLI before anything is sent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence

from imsflow.errors import InvalidRequestError

__all__ = [
    "DESCRIPTION_RULE",
    "EXPORT_FORMATS",
    "NAME_RULE",
    "TAG_RULE",
    "check_bucket_url",
    "check_description",
    "check_enterprise_project_id",
    "check_export_format",
    "check_image_name",
    "check_image_tag",
    "check_tag",
    "check_tags",
    "check_uuid",
]

NAME_RULE = (
    "1 to 128 characters: letters, digits, hyphens (-), periods (.), underscores (_) and spaces; "
    "must not start or end with a space"
)
DESCRIPTION_RULE = "at most 1024 characters; no carriage returns and no angle brackets (< >)"
TAG_RULE = (
    'a tag is "key.value": key 1 to 36 characters, value 0 to 43 characters, '
    "only letters, digits, underscores (_) and hyphens (-)"
)
IMAGE_TAG_RULE = "key 1 to 36 characters and value 0 to 43 characters (surrounding spaces are trimmed)"
TAGS_EXCLUSIVE_RULE = "use either tags or image_tags, not both"
UUID_RULE = "must be a UUID such as 877a2cda-ba63-4e1e-b95f-e67e48b6129a"
EXPORT_FORMATS = ("qcow2", "vhd", "zvhd", "vmdk")
BUCKET_URL_RULE = 'must be "<bucket>:<file>" (an OBS bucket name and a file name, no spaces)'

_NAME = re.compile(r"[A-Za-z0-9\-._ ]{1,128}")
_TAG_PART = re.compile(r"[A-Za-z0-9_\-]*")
# OBS bucket names: 3-63 lowercase letters, digits, hyphens and periods (OBS naming rules).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")

TAG_KEY_MAX = 36
TAG_VALUE_MAX = 43


def check_image_name(name: str, field: str = "name") -> str:
    """An image name as IMS accepts it."""
    if not _NAME.fullmatch(name) or name != name.strip(" "):
        raise InvalidRequestError(field, name, NAME_RULE)
    return name


def check_description(description: str, field: str = "description") -> str:
    """An image description as IMS accepts it."""
    if len(description) > 1024 or any(ch in description for ch in "\r<>"):
        raise InvalidRequestError(field, description, DESCRIPTION_RULE)
    return description


def check_tag(tag: str, field: str = "tags") -> str:
    """One ``key.value`` tag; the first period separates key and value."""
    key, dot, value = tag.partition(".")
    if (
        not dot
        or not 1 <= len(key) <= TAG_KEY_MAX
        or len(value) > TAG_VALUE_MAX
        or not _TAG_PART.fullmatch(key)
        or not _TAG_PART.fullmatch(value)
    ):
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
    """IMS takes ``tags`` or ``image_tags``, never both."""
    if tags and image_tags:
        raise InvalidRequestError("tags", "tags and image_tags", TAGS_EXCLUSIVE_RULE)


def check_uuid(value: str, field: str) -> str:
    """A resource id in the canonical UUID form (ECS ids, image ids)."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidRequestError(field, value, UUID_RULE) from None
    if str(parsed) != value.lower():
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
    bucket, colon, name = value.partition(":")
    if not colon or not _BUCKET.fullmatch(bucket) or not name or " " in name:
        raise InvalidRequestError(field, value, BUCKET_URL_RULE)
    return value


def check_export_format(value: str, field: str = "file_format") -> str:
    """An export file format IMS supports."""
    if value not in EXPORT_FORMATS:
        raise InvalidRequestError(field, value, f"must be one of {', '.join(EXPORT_FORMATS)}")
    return value
