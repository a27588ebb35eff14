"""``imsflow cloud`` and ``imsflow create`` as a user runs them: separate processes, real HTTP, configuration
through IMSFLOW_* only.

The runs are recorded on one ``prefect server start`` of the module (``PREFECT_API_URL``): what they show does
not depend on where the run is recorded, and a temporary server per run costs seconds of CPU each. ``imsflow
create`` on its own temporary server, as a user's first run goes, is the README's (tests/e2e/test_readme.py);
the demo from a fresh machine is the installed wheel's (tests/e2e/test_wheel.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import yaml

from tests.e2e.stack import (
    DB_1,
    DEMO_PASSWORD,
    IMSFLOW,
    ROOT,
    SEED,
    WEB_1,
    free_port,
    prefect_server,
    process_env,
    wait_for,
)

pytestmark = pytest.mark.slow


@dataclass
class Cli:
    url: str
    env: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*IMSFLOW, *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = httpx.get(f"{self.url}/_local/stats", timeout=5).json()
        return result

    def images(self) -> list[dict[str, object]]:
        """``GET /v2/cloudimages`` with a token of our own, as any API user would list them."""
        token = httpx.post(
            f"{self.url}/v3/auth/tokens",
            json={
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {"name": "demo", "password": DEMO_PASSWORD, "domain": {"name": "demo"}}
                        },
                    },
                    "scope": {"project": {"name": "eu-de"}},
                }
            },
            timeout=5,
        ).headers["X-Subject-Token"]
        body = httpx.get(f"{self.url}/v2/cloudimages", headers={"X-Auth-Token": token}, timeout=5).json()
        images: list[dict[str, object]] = body["images"]
        return images


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    home = tmp_path_factory.mktemp("cli")
    seed = home / "seed.yaml"
    seed.write_text(yaml.safe_dump(SEED))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(home, url)
    log = (home / "cloud.log").open("wb")
    cloud = subprocess.Popen(
        [*IMSFLOW, "cloud", "--port", str(port), "--seed", str(seed)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: httpx.get(f"{url}/_local/stats", timeout=2).status_code == 200,
            timeout=30,
            what="imsflow cloud",
            proc=cloud,
        )
        yield Cli(url=url, env=env)
    finally:
        cloud.terminate()
        cloud.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def on_server(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """The module's CLI, its runs recorded on one Prefect server of the module."""
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as api:
        yield Cli(url=cli.url, env={**cli.env, "PREFECT_API_URL": api})


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert DEMO_PASSWORD not in output


def test_create_makes_an_active_image_and_the_second_run_reuses_the_token(on_server: Cli) -> None:
    cli = on_server
    first = cli.run("create", "--instance-id", WEB_1, "--name", "web-1-golden", "--tag", "env=prod")
    assert first.returncode == 0, first.stderr
    assert_clean(first)
    image_id = first.stdout.strip().splitlines()[-1]
    listed = {image["id"]: image for image in cli.images()}
    assert listed[image_id]["status"] == "active"
    assert listed[image_id]["name"] == "web-1-golden"
    token_calls = cli.stats()["iam.create_token"]

    second = cli.run("create", "--instance-id", WEB_1, "--name", "web-1-second")
    assert second.returncode == 0, second.stderr
    assert cli.stats()["iam.create_token"] == token_calls, "the second run must reuse the cached token"


def test_running_ecs_is_refused_before_submitting(on_server: Cli) -> None:
    cli = on_server
    before = cli.stats().get("ims.create_image", 0)
    result = cli.run("create", "--instance-id", DB_1, "--name", "db-1-golden")
    assert result.returncode == 1
    assert_clean(result)
    assert "db-1" in result.stderr
    assert "--stop-if-running" in result.stderr
    assert cli.stats().get("ims.create_image", 0) == before


def test_unknown_ecs_is_one_clear_line(on_server: Cli) -> None:
    cli = on_server
    result = cli.run("create", "--instance-id", "6f1c2d7e-0000-4000-8000-0000000000ff", "--name", "ghost")
    assert result.returncode == 1
    assert_clean(result)
    assert "does not exist" in result.stderr


def test_wrong_password_fails_without_retry_storm(on_server: Cli) -> None:
    cli = on_server
    before = cli.stats()["iam.create_token"]
    result = cli.run(
        "create",
        "--instance-id",
        WEB_1,
        "--name",
        "web-1-x",
        IMSFLOW_PASSWORD="wrong",
        IMSFLOW_USERNAME="eve",
    )
    assert result.returncode == 1
    assert_clean(result)
    assert "error:" in result.stderr
    # one attempt: a wrong password is not transient, and the flow does not retry
    assert cli.stats()["iam.create_token"] - before <= 2


def test_unreachable_endpoint_names_the_url(on_server: Cli) -> None:
    cli = on_server
    dead = f"http://127.0.0.1:{free_port()}"
    # Refused connections are transient: get-token runs 5 times, 0.1 + 0.2 + 0.4 + 0.8 s apart (up to half
    # more) instead of the default 2 + 4 + 8 + 16 s.
    result = cli.run(
        "create",
        "--instance-id",
        WEB_1,
        "--name",
        "web-1-y",
        IMSFLOW_IAM_URL=dead,
        IMSFLOW_USERNAME="nobody",
        IMSFLOW_RETRY_BACKOFF="0.1",
    )
    assert result.returncode == 1
    assert_clean(result)
    assert dead in result.stderr


def test_bad_name_is_refused_before_any_call(cli: Cli) -> None:
    before = cli.stats()
    result = cli.run("create", "--instance-id", WEB_1, "--name", "bad/name")
    assert result.returncode == 2
    assert_clean(result)
    assert "letters, digits" in result.stderr
    assert cli.stats() == before


def test_config_masks_secrets(cli: Cli) -> None:
    result = cli.run("config")
    assert result.returncode == 0
    assert DEMO_PASSWORD not in result.stdout
    assert "**********" in result.stdout
    assert cli.url in result.stdout
