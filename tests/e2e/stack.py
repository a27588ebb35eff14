"""A whole imsflow installation as processes: Prefect server, local cloud, and ``imsflow serve``.

Its Prefect servers start on a copy of the run's migrated database (tests/prefect_home.py).

Started once per test session (a Prefect server takes seconds to come up). Everything listens on free ports on
127.0.0.1 and lives under one temporary directory; nothing of the developer's (~/.prefect, IMSFLOW_*) is used.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from tests.prefect_home import WITHOUT_EVENT_SERVICES, seed_database

ROOT = Path(__file__).resolve().parents[2]
# The `imsflow` command (the console script runs `cli.main:main`, as `python -m cli` does).
IMSFLOW = [sys.executable, "-m", "cli"]
#: Seconds a process waits for Prefect's temporary server. On a busy 2-core machine (other test runs, the
#: processes of this test) it takes longer than Prefect's default 20 s; the CLI waits 90 s, tests wait more.
PREFECT_STARTUP_TIMEOUT = "120"
DEMO_PASSWORD = "demo-password"
# A second IAM user, known only to the imsflow-credentials block of the block test (not to IMSFLOW_*).
OPS_USER, OPS_PASSWORD = "ops", "ops-Passw0rd-only-in-a-block"
#: What ``imsflow serve`` registers: every deployment of prefect.yaml (a stack is ready once all are there).
SERVED_DEPLOYMENTS = len(yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())["deployments"])
WEB_1 = "6f1c2d7e-0000-4000-8000-000000000001"  # SHUTOFF in the seed below
DB_1 = "6f1c2d7e-0000-4000-8000-000000000002"  # ACTIVE
APP_1 = "6f1c2d7e-0000-4000-8000-000000000003"  # SHUTOFF, two data disks
CACHE_1 = "6f1c2d7e-0000-4000-8000-000000000004"  # ACTIVE, one data disk
VAULT = "3c2b1a09-0000-4000-8000-0000000000b1"  # a CBR vault (full-ECS images)

SEED: dict[str, Any] = {
    "domains": [
        {
            "name": "demo",
            "users": [
                {"name": "demo", "password": DEMO_PASSWORD},
                {"name": OPS_USER, "password": OPS_PASSWORD},
            ],
            "projects": [{"id": "0123456789abcdef0123456789abcdef", "name": "eu-de"}],
        }
    ],
    "servers": [
        {"id": WEB_1, "name": "web-1", "project": "eu-de", "status": "SHUTOFF", "tags": ["backup=nightly"]},
        {"id": DB_1, "name": "db-1", "project": "eu-de", "status": "ACTIVE"},
        # For the other image kinds (the browser test): a stopped ECS with two data disks, imaged as a
        # system-and-data set, and a running one with a data disk, imaged whole (full-ecs) into the vault.
        {"id": APP_1, "name": "app-1", "project": "eu-de", "status": "SHUTOFF", "data_disks": 2},
        {"id": CACHE_1, "name": "cache-1", "project": "eu-de", "status": "ACTIVE", "data_disks": 1},
    ],
    "vaults": [{"id": VAULT, "name": "server-backups", "project": "eu-de"}],
    "buckets": ["imsflow-exports"],
    # Short jobs: the browser test watches a whole run.
    "timing": {"image_job_seconds": 3, "job_init_seconds": 0.5, "stop_seconds": 1, "start_seconds": 1},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``check`` until true; fail early when the process it waits for has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        # Not up yet: refused connections, and a busy server's 503 bodies that are no answer to the check.
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError):
            if check():
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


def prefect_home(home: Path) -> Path:
    """The ``PREFECT_HOME`` of the processes of ``home`` (:func:`process_env`)."""
    return home / "prefect"


def seed_prefect_home(home: Path) -> None:
    """Start ``home``'s Prefect database as a copy of the run's migrated one (tests/prefect_home.py): for
    tests of something else than a first start on a fresh machine."""
    seed_database(prefect_home(home) / "prefect.db")


def process_env(
    home: Path, cloud_url: str, *, username: str = "demo", password: str = DEMO_PASSWORD, **extra: str
) -> dict[str, str]:
    """Environment for an imsflow/Prefect process: this machine's, less any PREFECT_*/IMSFLOW_* of the
    developer's, with its own PREFECT_HOME and key directory under ``home`` and the local cloud at
    ``cloud_url`` (all three services)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "IMSFLOW_")) and key != "VIRTUAL_ENV"
    }
    env.update(
        PREFECT_HOME=str(prefect_home(home)),
        XDG_CONFIG_HOME=str(home / "config"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=PREFECT_STARTUP_TIMEOUT,
        IMSFLOW_PROFILE="local",
        IMSFLOW_IAM_URL=cloud_url,
        IMSFLOW_ECS_URL=cloud_url,
        IMSFLOW_IMS_URL=cloud_url,
        IMSFLOW_DOMAIN="demo",
        IMSFLOW_USERNAME=username,
        IMSFLOW_PASSWORD=password,
    )
    # The one-certificate CA of tests/conftest.py: Prefect builds a TLS context for each API client it opens
    # (about a dozen per command), from certifi's whole bundle unless told otherwise, even for the plain http
    # of these servers on 127.0.0.1 (about 0.2 s of CPU per command).
    if ca := os.environ.get("PREFECT_API_SSL_CERT_FILE"):
        env["PREFECT_API_SSL_CERT_FILE"] = ca
    env.update(extra)
    return env


@contextlib.contextmanager
def local_cloud(seed: dict[str, Any]) -> Iterator[str]:
    """The local cloud as a process of its own with ``seed`` (``localcloud.server.start_process``)."""
    from localcloud.server import start_process

    with start_process(seed) as url:
        yield url


def cloud_stats(url: str) -> dict[str, int]:
    """The local cloud's API calls per operation."""
    stats: dict[str, int] = httpx.get(f"{url}/_local/stats", timeout=5).json()
    return stats


#: Seconds between two looks at the cloud's counters while a test waits for a kill point. Each look is one
#: request on a kept-alive connection: a 5 ms loop of new connections cost the cloud and the test a core
#: between them for as long as the wait lasted (a process start, a temporary server's start).
STATS_INTERVAL = 0.02


def until_stats(
    url: str,
    ready: Callable[[dict[str, int]], bool],
    *,
    timeout: float,
    proc: subprocess.Popen[str] | None = None,
) -> dict[str, int] | None:
    """Wait until the cloud's counters satisfy ``ready``; return them, or ``None`` after ``timeout`` seconds.

    Raises :class:`ProcessEnded` (with its output) when ``proc``, the run the test means to kill, ended first.
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=5) as client:
        while True:
            stats: dict[str, int] = client.get("/_local/stats").json()
            if ready(stats):
                return stats
            if proc is not None and proc.poll() is not None:
                out, err = proc.communicate()
                output = (out or "") + (err or "")
                raise ProcessEnded(f"the run ended before the kill point (exit {proc.returncode}): {output}")
            if time.monotonic() > deadline:
                return None
            time.sleep(STATS_INTERVAL)


class ProcessEnded(AssertionError):
    """The process a test waited to kill ended on its own."""


def cloud_token(url: str, user: str, password: str, project_id: str, domain: str = "demo") -> str:
    """A project-scoped IAM token from the local cloud, for a test's own look at the cloud."""
    token: str = httpx.post(
        f"{url}/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
                },
                "scope": {"project": {"id": project_id}},
            }
        },
        timeout=5,
    ).headers["X-Subject-Token"]
    return token


def private_images(url: str, token: str) -> list[dict[str, Any]]:
    """``GET /v2/cloudimages?__imagetype=private`` as the cloud lists them."""
    images: list[dict[str, Any]] = httpx.get(
        f"{url}/v2/cloudimages", params={"__imagetype": "private"}, headers={"X-Auth-Token": token}, timeout=5
    ).json()["images"]
    return images


class PrefectServer:
    """``prefect server start`` alone (no UI) on a fixed free port and database under ``home``, which a test
    can kill and start again (a restart keeps its port and database). Its tests (the CLI's, the crashes')
    read no event back: it runs :data:`~tests.prefect_home.WITHOUT_EVENT_SERVICES`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> None:
        seed_database(self.home / "prefect-server" / "prefect.db")  # a restart keeps the database it has
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMSFLOW_"))}
        env.update(
            PREFECT_HOME=str(self.home / "prefect-server"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_LOGGING_SERVER_LEVEL="WARNING",
            **WITHOUT_EVENT_SERVICES,
        )
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port"]
        with (self.home / "prefect-server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [*command, str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda: httpx.get(f"{self.api}/health", timeout=2).json() is True,
            timeout=timeout,
            what="prefect server",
            proc=self.proc,
        )

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop it (SIGTERM, then SIGKILL if it lingers; ``sig=SIGKILL`` for a crash)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


@contextlib.contextmanager
def prefect_server(home: Path, *, timeout: float = 120) -> Iterator[str]:
    """A :class:`PrefectServer` for the block: yields its API URL once ``/api/health`` answers, and stops it
    afterwards. For tests whose processes would otherwise each start a temporary server: point them at it
    with ``PREFECT_API_URL``."""
    server = PrefectServer(home)
    server.start(timeout)
    try:
        yield server.api
    finally:
        server.stop()


@dataclass
class Stack:
    home: Path
    prefect_port: int
    cloud_port: int
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, IO[bytes]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def api(self) -> str:
        return f"{self.base}/api"

    @property
    def cloud_url(self) -> str:
        return f"http://127.0.0.1:{self.cloud_port}"

    def start(
        self, name: str, args: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.home / f"{name}.log").open("wb")
        self.logs[name] = log
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops the flow-run subprocesses too
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        self.logs[name].flush()
        return (self.home / f"{name}.log").read_text(errors="replace")

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``imsflow ARGS`` as a user would run it, against this stack."""
        return subprocess.run(
            [*IMSFLOW, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def save_credentials_block(self, name: str, username: str, password: str) -> None:
        """Save an imsflow Credentials block for this stack's local cloud, as an operator does once (in the
        UI, Blocks → imsflow Credentials, or in Python); ``imsflow blocks register`` must have run."""
        save = (
            "from runtime.credentials import ImsflowCredentials as C; "
            f"url = {self.cloud_url!r}; "
            "C(profile='local', iam_url=url, ecs_url=url, ims_url=url, "
            f"domain='demo', username={username!r}, password={password!r})"
            f".save({name!r}, overwrite=True)"
        )
        saved = subprocess.run(
            [sys.executable, "-c", save], env=self.env, cwd=ROOT, capture_output=True, check=False
        )
        assert saved.returncode == 0, saved.stderr

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """One API call, retried like Prefect's own client does when the server is busy.

        Under load the SQLite-backed server answers 503 ("database is locked") and rolls the request back;
        Prefect's client retries those, so the test's direct calls do too.
        """
        for delay in (0.5, 1.0, 2.0, 4.0, 8.0):
            response = httpx.request(method, f"{self.api}{path}", json=body, timeout=30)
            if response.status_code not in (429, 502, 503):
                return response
            time.sleep(delay)
        return response

    def get(self, path: str) -> Any:
        response = self.request("GET", path)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.request("POST", path, body)

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/deployments/name/{flow}/{name}")
        return result

    def flow_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/flow_runs/{run_id}")
        return result

    def wait_for_run(self, run_id: str, *, timeout: float = 60) -> dict[str, Any]:
        """The flow run once it reached a final state."""
        final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in final:
                return run
            time.sleep(0.5)
        raise TimeoutError(f"flow run {run_id} not final after {timeout:.0f} s: {run['state_type']}")

    def stop(self) -> None:
        # serve first: on SIGTERM it pauses its deployments through the API, which must still be up.
        for name in ("serve", "cloud", "prefect"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for log in self.logs.values():
            log.close()


@contextlib.contextmanager
def running_stack(home: Path) -> Iterator[Stack]:
    """Prefect server + local cloud + ``imsflow serve``, ready for flow runs of the deployments."""
    from cryptography.fernet import Fernet

    started = time.monotonic()
    prefect_port, cloud_port = free_port(), free_port()
    seed = home / "seed.yaml"
    seed.write_text(yaml.safe_dump(SEED))
    cloud_url = f"http://127.0.0.1:{cloud_port}"
    env = process_env(
        home,
        cloud_url,
        # The UI takes its API URL from these settings, not from `--port` (browser-notes.md).
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(prefect_port),
        PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api",
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        PREFECT_LOGGING_SERVER_LEVEL="WARNING",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        IMSFLOW_POLL_INITIAL_DELAY="1",
        IMSFLOW_POLL_MAX_INTERVAL="2",
        IMSFLOW_RESULT_KEY=Fernet.generate_key().decode(),
        PYTHONUNBUFFERED="1",
    )
    stack = Stack(home=home, prefect_port=prefect_port, cloud_port=cloud_port, env=env)
    seed_prefect_home(home)  # the server runs with process_env's PREFECT_HOME
    try:
        server = stack.start(
            "prefect",
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(prefect_port),
            ],
        )
        cloud = stack.start(
            "cloud", [sys.executable, "-m", "localcloud", "--port", str(cloud_port), "--seed", str(seed)]
        )
        wait_for(
            lambda: httpx.get(f"{cloud_url}/_local/stats", timeout=2).status_code == 200,
            timeout=30,
            what="local cloud",
            proc=cloud,
        )
        wait_for(
            lambda: httpx.get(f"{stack.api}/health", timeout=2).json() is True,
            timeout=60,
            what="prefect server",
            proc=server,
        )
        stack.timings["prefect server healthy"] = time.monotonic() - started
        serve = stack.start("serve", [*IMSFLOW, "serve"])
        # serve registers the deployments one by one: ready once all of prefect.yaml's are there.
        wait_for(
            lambda: (
                httpx.post(f"{stack.api}/deployments/count", json={}, timeout=2).json() >= SERVED_DEPLOYMENTS
            ),
            timeout=60,
            what="imsflow serve",
            proc=serve,
        )
        stack.timings["stack ready"] = time.monotonic() - started
        yield stack
    finally:
        stack.stop()
