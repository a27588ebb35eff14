"""The IMS field rules (Image Attributes, Image Tag Format, Creating/Exporting an Image)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

import pytest
from pydantic import BaseModel, BeforeValidator, ValidationError

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


# ------------------------------------------------------------------ the vocabulary of parameter fields


@pytest.mark.parametrize(
    ("tag", "pair"),
    [("env=prod", ("env", "prod")), ("key=", ("key", "")), ("a_b-c=d_e-f", ("a_b-c", "d_e-f"))],
)
def test_parse_tag(tag: str, pair: tuple[str, str]) -> None:
    assert validation.parse_tag(tag) == pair
    assert validation.parse_tag("k" * 36 + "=" + "v" * 43) == ("k" * 36, "v" * 43)


@pytest.mark.parametrize(
    "tag",
    ["novalue", "=value", "env.prod", "k=v=w", "k=v!", "a b=c", "k" * 37 + "=v", "k=" + "v" * 44, "ü=v"],
)
def test_parse_tag_states_the_rule(tag: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validation.parse_tag(tag, "--tag")
    assert info.value.field == "--tag"
    assert info.value.rule == validation.TAG_PARAM_RULE
    assert '"key=value"' in str(info.value)
    assert "^" not in str(info.value)  # the rule in words, never the regex


def test_parse_dotted_tag() -> None:
    assert validation.parse_dotted_tag("env.prod") == ("env", "prod")
    assert validation.parse_dotted_tag("key.") == ("key", "")
    with pytest.raises(InvalidRequestError, match=r"key\.value"):
        validation.parse_dotted_tag("env=prod")


@pytest.mark.parametrize(
    ("value", "ok"), [("a=b", True), ("a=", True), ("a=b c.d", True), ("=b", False), ("ab", False)]
)
def test_tag_filter(value: str, ok: bool) -> None:
    if ok:
        assert validation.check_tag_filter(value) == value
    else:
        with pytest.raises(InvalidRequestError, match="Key=Value"):
            validation.check_tag_filter(value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("prod", True),
        ("team-a-2", True),
        ("0", True),
        ("-a", False),
        ("Prod", False),
        ("a_b", False),
        ("", False),
    ],
)
def test_block_names(value: str, ok: bool) -> None:
    assert bool(re.fullmatch(validation.BLOCK_NAME_PATTERN, value)) is ok
    if ok:
        assert validation.check_block_name(value) == value
    else:
        with pytest.raises(InvalidRequestError, match="lowercase letters, digits and hyphens"):
            validation.check_block_name(value)


class Form(BaseModel):
    """Every typed field of the vocabulary, as a flow form uses them."""

    instance_id: validation.InstanceId | None = None
    image_id: validation.ImageId | None = None
    name: validation.ImageName | None = None
    description: validation.ImageDescription | None = None
    tags: list[validation.TagParam] = []
    bucket_url: validation.BucketUrl | None = None
    credentials_block: validation.CredentialsBlock = None


GOOD_FIELDS: list[tuple[str, object]] = [
    ("instance_id", SERVER_ID),
    ("instance_id", SERVER_ID.upper()),
    ("image_id", SERVER_ID),
    ("name", "web-1 2026.01.05"),
    ("description", ""),
    ("description", "a\tb ünï"),
    ("tags", ["env=prod", "key="]),
    ("bucket_url", "ims-image:centos7_5.qcow2"),
    ("bucket_url", "my.bucket-1:dir/file.vhd"),
    ("credentials_block", "prod-eu"),
    ("credentials_block", None),
]
BAD_FIELDS: list[tuple[str, object, str]] = [
    ("instance_id", "web-1", validation.UUID_RULE),
    ("instance_id", SERVER_ID.replace("-", ""), validation.UUID_RULE),
    ("image_id", "{" + SERVER_ID + "}", validation.UUID_RULE),
    ("name", " lead", validation.NAME_RULE),
    ("name", "", validation.NAME_RULE),
    ("name", "A" * 129, validation.NAME_RULE),
    ("description", "a\nb", validation.DESCRIPTION_RULE),
    ("description", "<b>", validation.DESCRIPTION_RULE),
    ("tags", ["env.prod"], validation.TAG_PARAM_RULE),
    ("tags", ["k=v!"], validation.TAG_PARAM_RULE),
    ("bucket_url", "b:f", validation.BUCKET_URL_RULE),
    ("bucket_url", "Bucket:file", validation.BUCKET_URL_RULE),
    ("bucket_url", "bucket:file name", validation.BUCKET_URL_RULE),
    ("bucket_url", "nocolon", validation.BUCKET_URL_RULE),
    ("credentials_block", "Prod_EU", validation.BLOCK_NAME_RULE),
]


@pytest.mark.parametrize(("field", "value"), GOOD_FIELDS)
def test_typed_fields_accept_the_documented_forms(field: str, value: object) -> None:
    # No credentials block is "" however given (below); every other accepted value is kept as it is.
    expected = "" if (field, value) == ("credentials_block", None) else value
    assert getattr(Form(**{field: value}), field) == expected


@pytest.mark.parametrize("given", [{}, {"credentials_block": None}, {"credentials_block": ""}])
def test_no_credentials_block_is_empty_however_given(given: dict[str, object]) -> None:
    # A flow hands credentials_block on (a fleet's chunk runs): "" passes the form's schema, null not.
    assert Form(**given).credentials_block == ""


def test_the_credentials_block_form_field_is_a_plain_optional_text() -> None:
    schema = Form.model_json_schema()["properties"]["credentials_block"]
    assert schema["type"] == "string"
    assert "anyOf" not in schema
    assert schema["default"] == ""
    assert schema["title"] == "Credentials block"
    assert "IMSFLOW_" in schema["description"]
    assert re.fullmatch(schema["pattern"], "")
    assert re.fullmatch(schema["pattern"], "prod-eu")
    assert not re.fullmatch(schema["pattern"], "Prod_EU")


class ParamsForm(BaseModel):
    model_config = validation.form_config("Things", "What to do.")

    name: Annotated[str | None, BeforeValidator(validation.empty_is_none)] = None
    count: int | None = None
    when: date | None = None
    id: validation.InstanceId | None = None
    size: int = 3


def test_form_config_titles_the_form_and_drops_every_null() -> None:
    schema = ParamsForm.model_json_schema()
    assert (schema["title"], schema["description"]) == ("Things", "What to do.")
    properties = schema["properties"]
    for name in ("name", "count", "when", "id"):
        assert "anyOf" not in properties[name], name
        assert "default" not in properties[name], name
    assert properties["name"]["type"] == "string"
    assert properties["count"]["type"] == "integer"
    assert properties["when"] == {"format": "date", "title": "When", "type": "string"}
    assert properties["id"]["pattern"] == validation.UUID_PATTERN
    assert properties["size"]["default"] == 3


def test_an_empty_form_value_is_not_set() -> None:
    assert ParamsForm(name="").name is None
    assert ParamsForm(name=None).name is None
    assert ParamsForm(name="x").name == "x"
    assert validation.empty_is_none(0) == 0


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("instance_id", "web-1", "must be a UUID such as"),
        ("name", " lead", "must not start or end with a space"),
        ("description", "<b>", "no angle brackets"),
        ("tags", ["env.prod"], 'a tag is "key=value"'),
        ("bucket_url", "nocolon", 'must be "<bucket>:<file>"'),
        ("credentials_block", "Prod_EU", "lowercase letters, digits and hyphens"),
    ],
)
def test_a_typed_field_message_reads_as_a_sentence(field: str, value: object, words: str) -> None:
    # The message names the field, the value and the rule in words: no regex, no pydantic jargon.
    with pytest.raises(ValidationError) as info:
        Form(**{field: value})
    message = info.value.errors()[0]["msg"]
    assert words in message
    assert field in message
    assert "^" not in message
    assert "pattern" not in message


@pytest.mark.parametrize(("field", "value", "rule"), BAD_FIELDS)
def test_typed_fields_state_the_rule_not_the_regex(field: str, value: object, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        Form(**{field: value})
    (error,) = info.value.errors()
    assert isinstance(error["ctx"]["error"], InvalidRequestError)
    assert rule in error["msg"]
    assert "pattern" not in error["msg"]


@pytest.mark.parametrize(("field", "value"), GOOD_FIELDS)
def test_typed_field_patterns_accept_what_the_checks_accept(field: str, value: object) -> None:
    # The Prefect UI checks a form against the JSON schema, the flow against the checks: they must agree.
    schema = Form.model_json_schema()["properties"][field]
    if field == "tags":
        schema = schema["items"]
    pattern = next((s["pattern"] for s in schema.get("anyOf", [schema]) if "pattern" in s), None)
    for item in value if isinstance(value, list) else [value]:
        if item is not None:
            assert pattern is not None
            assert re.fullmatch(pattern, str(item))


@pytest.mark.parametrize(("field", "value", "rule"), BAD_FIELDS)
def test_typed_field_patterns_refuse_what_the_checks_refuse(field: str, value: object, rule: str) -> None:
    schema = Form.model_json_schema()["properties"][field]
    if field == "tags":
        schema = schema["items"]
    constraints = next(s for s in schema.get("anyOf", [schema]) if "pattern" in s)
    for item in value if isinstance(value, list) else [value]:
        text = str(item)
        too_long = len(text) > constraints.get("maxLength", len(text))
        assert too_long or not re.fullmatch(constraints["pattern"], text)


def test_typed_fields_carry_their_titles() -> None:
    properties = Form.model_json_schema()["properties"]
    assert properties["instance_id"]["anyOf"][0]["title"] == "Instance ID"
    assert properties["image_id"]["anyOf"][0]["title"] == "Image ID"
    assert properties["name"]["anyOf"][0]["title"] == "Image name"
    assert properties["bucket_url"]["anyOf"][0]["title"] == "OBS target"
    assert validation.BUCKET_URL_RULE in properties["bucket_url"]["anyOf"][0]["description"]


def test_one_pattern_per_rule() -> None:
    assert validation.TAG_PARAM_PATTERN.replace("=", "\\.") == validation.TAG_PATTERN
    assert regex_without_lookaround(validation.TAG_PARAM_PATTERN)
    assert regex_without_lookaround(validation.BLOCK_NAME_PATTERN)
