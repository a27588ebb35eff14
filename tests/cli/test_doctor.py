"""``imsflow doctor`` as a user runs it: lines, marks, the summary line and the exit code."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

import cli.commands.doctor as doctor_command
from cli.main import app
from imsflow.doctor import run_checks
from localcloud import LocalCloud
from localcloud.seed import FaultRuleSeed
from tests.e2e.stack import IMSFLOW, SEED, free_port, process_env, wait_for
from tests.support import BASE_URL, PASSWORD, make_cloud, transport_for

runner = CliRunner()


class HeaderLog(httpx.AsyncBaseTransport):
    """The in-process local cloud, remembering the response headers of the last answer per path."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.network = transport_for(cloud)
        self.headers: dict[str, httpx.Headers] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.network.handle_async_request(request)
        self.headers[request.url.path] = response.headers
        return response


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HeaderLog:
    """IMSFLOW_* pointing at the in-process local cloud; the command's HTTP goes through its transport."""
    monkeypatch.chdir(tmp_path)  # no developer .env
    for name, value in {
        "IMSFLOW_PROFILE": "local",
        "IMSFLOW_IAM_URL": BASE_URL,
        "IMSFLOW_ECS_URL": BASE_URL,
        "IMSFLOW_IMS_URL": BASE_URL,
        "IMSFLOW_DOMAIN": "demo",
        "IMSFLOW_USERNAME": "alice",
        "IMSFLOW_PASSWORD": PASSWORD,
    }.items():
        monkeypatch.setenv(name, value)
    log = HeaderLog(make_cloud())
    monkeypatch.setattr(doctor_command, "run_checks", functools.partial(run_checks, transport=log))
    return log


@pytest.fixture
def cloud(network: HeaderLog) -> LocalCloud:
    return network.cloud


def test_all_checks_pass_and_exit_0(cloud: LocalCloud) -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("imsflow doctor: profile local, region eu-de")
    for name in (
        "settings",
        "dns",
        "tls",
        "token",
        "project",
        "ecs-list",
        "ims-list",
        "ims-quota",
        "ims-job",
    ):
        assert any(line.startswith(f"  ✓ {name} ") for line in lines), (name, result.output)
    assert lines[-1] == "all 9 checks passed"
    assert PASSWORD not in result.output


def test_a_fault_fails_that_check_with_its_request_id_and_exit_1(
    cloud: LocalCloud, network: HeaderLog
) -> None:
    cloud.faults.add(FaultRuleSeed.model_validate({"kind": "server_error", "operation": "ims.show_quota"}))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    failed = [line for line in lines if line.startswith("  ✗ ")]
    assert len(failed) == 1
    assert failed[0].startswith("  ✗ ims-quota ")
    assert "HTTP 500" in failed[0]
    following = lines[lines.index(failed[0]) + 1 :]
    assert any("hint:" in line for line in following[:2])
    # The local cloud's X-Request-Id (where it sends one) is shown under the failed line.
    sent = network.headers["/v1/cloudimages/quota"].get("X-Request-Id")
    if sent is not None:
        assert following[0].strip() == f"request id: {sent}"
    assert lines[-1] == "1 of 9 checks failed"


def test_a_gateway_error_shows_its_request_id(cloud: LocalCloud) -> None:
    cloud.faults.add(FaultRuleSeed.model_validate({"kind": "apig_throttle", "operation": "ims.list_images"}))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    line = next(i for i, text in enumerate(lines) if text.startswith("  ✗ ims-list "))
    assert "APIG.0308" in lines[line]
    assert lines[line + 1].strip().startswith("request id: ")
    assert len(lines[line + 1].strip().removeprefix("request id: ")) == 32


def test_a_wrong_password_fails_the_token_and_skips_the_rest(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMSFLOW_PASSWORD", "wrong-Passw0rd")
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    token = next(line for line in lines if line.startswith("  ✗ token "))
    assert "IAM.0062" in token
    for name in ("project", "ecs-list", "ims-list", "ims-quota", "ims-job"):
        assert any(line.startswith(f"  - {name} ") and "skipped" in line for line in lines), name
    assert lines[-1] == "1 of 9 checks failed"
    assert "wrong-Passw0rd" not in result.output


def test_an_unresolvable_host_is_a_failed_line_not_a_crash(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMSFLOW_IMS_URL", "https://ims.invalid")
    result = runner.invoke(app, ["doctor", "--timeout", "3"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert any(line.startswith("  ✗ dns ") and "ims.invalid" in line for line in result.output.splitlines())


def test_help_says_it_is_read_only() -> None:
    result = runner.invoke(app, ["doctor", "--help"])
    assert result.exit_code == 0
    assert "read-only" in result.output
    assert "--credentials-block" in result.output


@pytest.mark.slow
def test_doctor_against_a_local_cloud_process(tmp_path: Path) -> None:
    """``imsflow doctor`` as a process, IMSFLOW_* pointing at ``python -m localcloud`` on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seed = tmp_path / "seed.yaml"
    seed.write_text(yaml.safe_dump(SEED))
    env = process_env(tmp_path, url)
    log = (tmp_path / "cloud.log").open("wb")
    cloud = subprocess.Popen(
        [sys.executable, "-m", "localcloud", "--port", str(port), "--seed", str(seed)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: httpx.get(f"{url}/_local/stats", timeout=2).status_code == 200,
            timeout=30,
            what="local cloud",
            proc=cloud,
        )

        def doctor() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*IMSFLOW, "doctor"],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        passed = doctor()
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert passed.stdout.splitlines()[-1] == "all 9 checks passed"

        fault = {"kind": "server_error", "operation": "ims.show_quota"}
        assert httpx.post(f"{url}/_local/faults", json=fault, timeout=5).status_code == 201
        failed = doctor()
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert any(line.startswith("  ✗ ims-quota ") for line in failed.stdout.splitlines())
        assert failed.stdout.splitlines()[-1] == "1 of 9 checks failed"
    finally:
        cloud.terminate()
        cloud.wait(timeout=10)
        log.close()
