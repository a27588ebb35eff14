"""No secret anywhere: password, SK, security token and IAM tokens never reach logs, errors, artifacts,
parameters, the Prefect database or result storage, whatever faults the runs meet.

One test drives a mix of runs (password and AK/SK, faults on, failures, a dry run, the CLI), then scans every
file under ``PREFECT_HOME``, the test server's database directory, and everything printed or logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_run_logger
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_HOME, get_current_settings
from typer.testing import CliRunner

from cli.app import QUIET_PREFECT
from cli.main import app
from flows.create_image import CreateImageParams, create_image_from_ecs
from imsflow.errors import ImsflowError
from localcloud import LocalCloud
from localcloud.seed import FaultRuleSeed
from tests.support import PASSWORD, PROJECT_ID, WEB_1, cloud_runtime, make_cloud

WRONG_PASSWORD = "wrong-Passw0rd-also-secret"
AK = "HPUAHYGIENEAK0000001"
SK = "hygiene-Secret-Key-0001"
SECURITY_TOKEN = "hygiene-Security-Token-0001"


def _faults(cloud: LocalCloud, *rules: dict[str, object]) -> LocalCloud:
    for rule in rules:
        cloud.faults.add(FaultRuleSeed.model_validate(rule))
    return cloud


def _aksk_cloud() -> LocalCloud:
    domain = {
        "name": "demo",
        "users": [{"name": "alice", "password": PASSWORD}],
        "projects": [{"id": PROJECT_ID, "name": "eu-de"}],
        "access_keys": [
            {"ak": AK, "sk": SK, "project": "eu-de", "user": "alice", "security_token": SECURITY_TOKEN}
        ],
    }
    return make_cloud(domains=[domain])


LEAKY: list[str] = []


@flow
async def careless_flow() -> None:
    # What a careless log line somewhere in a flow would do; the redaction filter must catch it. (The token
    # is not a parameter: flow parameters are stored in the database as they are, unmasked.)
    get_run_logger().info("debugging: token=%s password %s", LEAKY[0], PASSWORD)


def _hits(needles: dict[str, bytes], roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{what} in {path}" for what, needle in needles.items() if needle in data]
    return found


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
async def test_no_secret_in_home_database_or_output(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds: list[LocalCloud] = []
    # Password runs: a revoked token (a second token), lost answers, a 5xx while polling.
    cloud = _faults(
        make_cloud(),
        {"kind": "token_revoked", "operation": "ecs.show_server", "first": 1},
        {"kind": "commit_then_fail", "operation": "ims.create_image", "mode": "reset", "first": 1},
        {"kind": "server_error", "operation": "ims.show_job", "first": 1},
    )
    clouds.append(cloud)
    with cloud_runtime(cloud):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="hygiene-1"))
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="hygiene-1", dry_run=True))

    # A failed job and a wrong password: failures are stored (state messages, exceptions) too.
    cloud = _faults(make_cloud(), {"kind": "job_fail", "operation": "ims.create_image"})
    clouds.append(cloud)
    with cloud_runtime(cloud), pytest.raises(ImsflowError):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="hygiene-2"))
    # Another user, so that no cached token stands in for the login with the wrong password.
    with cloud_runtime(cloud, username="bob", password=WRONG_PASSWORD), pytest.raises(ImsflowError):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="hygiene-3"))

    # AK/SK with a security token, through dropped connections and a 5xx after the create applied.
    cloud = _faults(
        _aksk_cloud(),
        {"kind": "connection_reset", "operation": "ecs.show_server", "first": 1},
        {"kind": "commit_then_fail", "operation": "ims.create_image", "status": 500, "first": 1},
    )
    clouds.append(cloud)
    aksk: dict[str, Any] = {"username": None, "password": None, "access_key": AK, "secret_key": SK}
    with cloud_runtime(cloud, security_token=SECURITY_TOKEN, **aksk):
        await create_image_from_ecs(CreateImageParams(instance_id=WEB_1, name="hygiene-4"))

    # The CLI, failing on the wrong password.
    for name, value in QUIET_PREFECT.items():
        monkeypatch.setenv(name, value)
    cloud = make_cloud()
    clouds.append(cloud)
    with cloud_runtime(cloud, password=WRONG_PASSWORD):
        cli = CliRunner().invoke(app, ["create", "-i", WEB_1, "-n", "hygiene-5", "--dry-run"])
    assert cli.exit_code == 1

    tokens = [t for c in clouds for t in c.iam.tokens]
    assert len(tokens) >= 3, "the runs must have used several tokens, or the scan proves little"
    LEAKY[:] = [tokens[0]]
    await careless_flow()

    await APILogHandler.aflush()
    needles = {
        "password": PASSWORD.encode(),
        "wrong password": WRONG_PASSWORD.encode(),
        "SK": SK.encode(),
        "security token": SECURITY_TOKEN.encode(),
        **{f"IAM token {i}": t.encode() for i, t in enumerate(tokens)},
    }
    database_url = get_current_settings().server.database.connection_url
    assert database_url is not None
    database_dir = Path(database_url.get_secret_value().split(":///", 1)[1]).parent
    assert any(database_dir.glob("*.db")), database_dir
    home = Path(PREFECT_HOME.value())

    assert _hits(needles, [home, database_dir]) == []
    captured = capsys.readouterr()
    printed = captured.out + captured.err + cli.output + caplog.text
    assert [what for what, needle in needles.items() if needle.decode() in printed] == []
    assert "debugging: token=**********" in caplog.text, "the careless line was logged, masked"
