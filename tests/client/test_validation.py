"""The IMS field rules (Image Attributes, Image Tag Format, Creating/Exporting an Image)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from imsflow import validation
from imsflow.errors import InvalidRequestError
from imsflow.models import CreateImageFromEcsRequest, ExportImageRequest, ImageTag, build_request

from .conftest import SERVER_ID


@pytest.mark.parametrize(
    "name",
    ["a", "ims_test", "web-1 2026.01.05", "A" * 128, "x y", "Ubuntu_22.04-golden", "0"],
)
def test_good_names(name: str) -> None:
    assert validation.check_image_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", " lead", "trail ", "A" * 129, "slash/no", "colon:no", "üml", "tab\tno", "new\nline", "a+b", "(x)"],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validation.check_image_name(name)
    assert info.value.field == "name"
    assert info.value.rule == validation.NAME_RULE


@pytest.mark.parametrize(
    "description", ["", "Create a system disk image from an ECS", "x" * 1024, "a\tb", "ünï"]
)
def test_good_descriptions(description: str) -> None:
    assert validation.check_description(description) == description


# A line feed too: the docs name only carriage returns, but the local cloud refuses any line break, and a
# description that might be refused is better caught before the call.
@pytest.mark.parametrize("description", ["x" * 1025, "a\rb", "a\nb", "<b>", "a > b", "a<b"])
def test_bad_descriptions(description: str) -> None:
    with pytest.raises(InvalidRequestError, match="no line breaks"):
        validation.check_description(description)


@pytest.mark.parametrize(
    "tag",
    ["aaa.111", "key.", "k" * 36 + "." + "v" * 43, "env.prod", "a_b-c.d_e-f", "k.v.w".replace(".w", "")],
)
def test_good_tags(tag: str) -> None:
    assert validation.check_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    ["nodot", ".value", "k" * 37 + ".v", "k." + "v" * 44, "env=prod.x", "a b.c", "k.v.w", "k.v!", "ü.v"],
)
def test_bad_tags(tag: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validation.check_tag(tag)
    assert info.value.rule == validation.TAG_RULE


def test_image_tags_trim_and_limit() -> None:
    assert validation.check_image_tag("  key ", " value  ") == ("key", "value")
    assert ImageTag(key=" k ", value=" v ").model_dump() == {"key": "k", "value": "v"}
    with pytest.raises(InvalidRequestError):
        validation.check_image_tag("k" * 37, "v")
    with pytest.raises(InvalidRequestError):
        validation.check_image_tag("   ", "v")
    with pytest.raises(InvalidRequestError):
        validation.check_image_tag("k", "v" * 44)


@pytest.mark.parametrize("value", [SERVER_ID, SERVER_ID.upper()])
def test_good_uuids(value: str) -> None:
    assert validation.check_uuid(value, "instance_id") == value


@pytest.mark.parametrize(
    "value", ["", "web-1", SERVER_ID[:-1], SERVER_ID.replace("-", ""), "{" + SERVER_ID + "}"]
)
def test_bad_uuids(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="instance_id"):
        validation.check_uuid(value, "instance_id")


@pytest.mark.parametrize("value", ["ims-image:centos7_5.qcow2", "my.bucket-1:dir/file.vhd"])
def test_good_bucket_urls(value: str) -> None:
    assert validation.check_bucket_url(value) == value


@pytest.mark.parametrize("value", ["nocolon", ":file", "bucket:", "Bucket:file", "b:file name", "ab:file"])
def test_bad_bucket_urls(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="bucket"):
        validation.check_bucket_url(value)


def test_enterprise_project_id() -> None:
    assert validation.check_enterprise_project_id("0") == "0"
    assert validation.check_enterprise_project_id(SERVER_ID) == SERVER_ID
    with pytest.raises(InvalidRequestError):
        validation.check_enterprise_project_id("default")


def test_request_model_states_the_rule_in_pydantic_errors() -> None:
    with pytest.raises(ValidationError) as info:
        CreateImageFromEcsRequest(name=" bad", instance_id=SERVER_ID)
    assert validation.NAME_RULE in str(info.value)


def test_build_request_raises_invalid_request_error() -> None:
    with pytest.raises(InvalidRequestError) as info:
        build_request(CreateImageFromEcsRequest, name="ok", instance_id="web-1")
    assert info.value.field == "instance_id"
    with pytest.raises(InvalidRequestError) as missing:
        build_request(CreateImageFromEcsRequest, name="ok")
    assert missing.value.field == "instance_id"
    assert "required" in str(missing.value).lower()


def test_tags_and_image_tags_are_exclusive() -> None:
    with pytest.raises(InvalidRequestError, match="either tags or image_tags"):
        build_request(
            CreateImageFromEcsRequest,
            name="x",
            instance_id=SERVER_ID,
            tags=["a.b"],
            image_tags=[{"key": "a", "value": "b"}],
        )


def test_ram_bounds() -> None:
    with pytest.raises(InvalidRequestError, match="max_ram"):
        build_request(CreateImageFromEcsRequest, name="x", instance_id=SERVER_ID, min_ram=2048, max_ram=1024)
    with pytest.raises(InvalidRequestError, match="min_ram"):
        build_request(CreateImageFromEcsRequest, name="x", instance_id=SERVER_ID, min_ram=-1)


def test_unknown_request_fields_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="nmae"):
        build_request(CreateImageFromEcsRequest, nmae="x", name="x", instance_id=SERVER_ID)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"bucket_url": "b-1:f.qcow2"}, "file_format"),
        ({"bucket_url": "b-1:f", "file_format": "qcow2", "is_quick_export": True}, "file_format"),
        ({"bucket_url": "b-1:f", "file_format": "raw"}, "file_format"),
    ],
)
def test_export_rules(values: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        build_request(ExportImageRequest, **values)


def test_quick_export_without_format() -> None:
    req = ExportImageRequest(bucket_url="b-1:f", is_quick_export=True)
    assert req.to_body() == {"bucket_url": "b-1:f", "is_quick_export": True}


NAMES = [
    "a",
    "ims_test",
    "web-1 2026.01.05",
    "A" * 128,
    "x y",
    " lead",
    "trail ",
    "",
    "A" * 129,
    "a/b",
    " ",
    "a  b",
]


@pytest.mark.parametrize("name", NAMES)
def test_name_pattern_agrees_with_the_check(name: str) -> None:
    # The pattern goes into JSON schemas (Prefect forms); it must accept exactly what the check accepts.
    try:
        validation.check_image_name(name)
        accepted = True
    except InvalidRequestError:
        accepted = False
    assert bool(re.fullmatch(validation.NAME_PATTERN, name)) is accepted


def regex_without_lookaround(pattern: str) -> bool:
    return "(?=" not in pattern and "(?!" not in pattern and "(?<" not in pattern


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (validation.NAME_PATTERN, "web-1 golden", "web-1 "),
        (validation.TAG_PATTERN, "env.prod", "env=prod"),
        (validation.UUID_PATTERN, SERVER_ID, "web-1"),
        (validation.BUCKET_URL_PATTERN, "my-images:web-1.qcow2", "my images:x"),
        (validation.DESCRIPTION_PATTERN, "plain text", "<script>"),
    ],
)
def test_exported_patterns(pattern: str, good: str, bad: str) -> None:
    assert re.fullmatch(pattern, good)
    assert not re.fullmatch(pattern, bad)
    assert regex_without_lookaround(pattern)
