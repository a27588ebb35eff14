"""Locks the public API of the client library: other packages (tasks, flows, CLI) build on these names."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from imsflow import auth, client, errors, models, redact, settings, validation


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (settings, {"ImsflowSettings", "Profile"}),
        (errors, {"ImsflowError", "ApiError", "ERROR_CODES", "error_for", "parse_error_response"}),
        (models, {"IamToken", "Server", "ImsJob", "EcsJob", "Image", "CreateImageFromEcsRequest", "Quota"}),
        (
            validation,
            {"NAME_PATTERN", "NAME_RULE", "DESCRIPTION_RULE", "BUCKET_URL_RULE", "check_image_name"},
        ),
        (auth, {"TokenAuth", "AkSkAuth"}),
        (client, {"CloudClient", "login"}),
        (redact, {"register_secret", "install_redaction", "RedactingFilter"}),
    ],
)
def test_exported_names(module: ModuleType, names: set[str]) -> None:
    exported = set(module.__all__)
    assert names <= exported
    for name in exported:
        assert hasattr(module, name), name


def params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_service_signatures() -> None:
    assert params(client.CloudClient.__init__) == ["self", "settings", "auth", "transport", "project_id"]
    assert params(client.CloudClient.from_settings) == ["settings", "token", "refresh", "transport"]
    assert params(client.IamApi.create_token) == [
        "self",
        "domain",
        "username",
        "password",
        "project_id",
        "project_name",
    ]
    assert params(client.EcsApi.list_servers) == [
        "self",
        "name",
        "status",
        "tags",
        "not_tags",
        "limit",
        "offset",
    ]
    assert params(client.EcsApi.stop_servers) == ["self", "ids", "type"]
    assert params(client.ImsApi.create_image_from_ecs) == ["self", "req"]
    assert params(client.ImsApi.export_image) == ["self", "image_id", "req"]
    assert params(errors.error_for) == ["status", "code", "message", "url", "request_id", "retry_after"]
    assert params(errors.JobFailedError.__init__) == [
        "self",
        "job_id",
        "error_code",
        "fail_reason",
        "request_id",
    ]
    assert params(errors.JobTimeoutError.__init__) == [
        "self",
        "job_id",
        "last_status",
        "waited_seconds",
        "request_id",
    ]


def test_retryable_is_defined_on_every_error() -> None:
    classes: list[type[errors.ImsflowError]] = [
        errors.ImsflowError,
        errors.ConfigError,
        errors.JobFailedError,
    ]
    for cls in [*classes, *errors.ERROR_CODES.values()]:
        assert isinstance(cls.retryable, bool)
