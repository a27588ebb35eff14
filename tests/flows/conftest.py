from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.background import api_healthy, await_health
from cli.tempserver import EPHEMERAL_ENV, stop_process
from runtime.retry import local_server_backoff
from tests.prefect_home import BATCHED_TASK_RUN_RECORDER, WITHOUT_EVENT_SERVICES, seed_database
from tests.support import LAYOUTS, endpoint_layout

#: Seconds the test server may take to come up. Generous: on a busy 2-core machine it can take minutes
#: (Prefect's default: 20 s).
SERVER_STARTUP_TIMEOUT = 120


class FlowTestServer:
    """A Prefect server process of this test run: uvicorn serving Prefect's API on SQLite, as Prefect's
    temporary server and its test harness run it, less the server modules they import into the tests'
    process just to spawn it (3 to 4 s of CPU per xdist worker).

    Its database starts as a copy of the run's migrated template (tests/prefect_home.py); until the template
    is ready, the launch waits in a thread of its own, so the worker's first tests run meanwhile.
    """

    def __init__(self, port: int, database: Path) -> None:
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.database_url = f"sqlite+aiosqlite:///{database}"
        self._process: subprocess.Popen[bytes] | None = None
        self._launch = threading.Thread(target=self._start, args=(port, database), daemon=True)
        self._launch.start()

    def _start(self, port: int, database: Path) -> None:
        seed_database(database)
        env = {
            **os.environ,
            **EPHEMERAL_ENV,  # what Prefect sets for its temporary server: no UI, an ephemeral server
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database_url,
            **_server_environment(),
        }
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "prefect.server.api.server:create_app",
                *UVICORN,
                "--port",
                str(port),
            ],
            env=env,
        )

    @property
    def process(self) -> subprocess.Popen[bytes]:
        self._launch.join()
        assert self._process is not None, "the test server's launch failed (its error is above)"
        return self._process

    @classmethod
    def spawn(cls) -> FlowTestServer:
        db_dir = Path(tempfile.mkdtemp(prefix="imsflow-test-server-"))
        atexit.register(shutil.rmtree, db_dir, ignore_errors=True)
        with socket.socket() as probe:  # a free port; the server binds it a moment later
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = cls(port, db_dir / "prefect-test.db")
        atexit.register(server.stop)  # also when the run ends before any flow test
        return server

    def wait_until_healthy(self, timeout: float) -> bool:
        """True once the server answers /health; False when its process died (then another is started)."""
        outcome = await_health(
            lambda wait: api_healthy(self.api_url, timeout=wait),
            lambda: self.process.poll() is None,
            timeout=timeout,
        )
        if outcome == "silent":
            raise RuntimeError(f"the Prefect test server did not answer within {timeout:.0f} s")
        return outcome == "healthy"

    def stop(self) -> None:
        self._launch.join()
        if self._process is not None:
            stop_process(self._process)


#: The server started ahead of the first flow test (:class:`_StartAhead`): one per process.
_ahead: list[FlowTestServer] = []
#: uvicorn's options as Prefect's temporary server passes them.
UVICORN = ["--host", "127.0.0.1", "--log-level", "error", "--lifespan", "on"]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the test server's process before the first flow test needs it.

    Coming up (the template database, imports, block registration) takes seconds. In the quick loop the flow
    tests come within seconds: the server starts now, while the worker's first tests run. In a full run the
    slow end-to-end tests come first, for minutes, and an idle Prefect server still costs a few percent of a
    core (uvicorn's and docket's timers): there it starts while the test before the worker's first flow test
    runs. :func:`prefect_server` waits for it, or starts one itself when no test came before.
    """
    here = Path(__file__).parent
    if session.config.option.collectonly or not any(
        here in Path(item.path).parents for item in session.items
    ):
        return
    slow_first = any(
        item.get_closest_marker("slow") is not None and here not in Path(item.path).parents
        for item in session.items
    )
    if slow_first:
        session.config.pluginmanager.register(_StartAhead(here), "imsflow-flow-server-ahead")
    else:
        _ahead.append(FlowTestServer.spawn())


class _StartAhead:
    """Spawns the test server when the next test to run is a flow test (a plugin: a conftest's own
    ``pytest_runtest_protocol`` is only called for the tests under it)."""

    def __init__(self, flows: Path) -> None:
        self.flows = flows

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        if _ahead:
            return
        if any(i is not None and self.flows in Path(i.path).parents for i in (item, nextitem)):
            _ahead.append(FlowTestServer.spawn())


def _server_environment() -> dict[str, str]:
    """Settings of the test server's process.

    A fleet waits for slots of its concurrency limit: the server answers 423 with a ``Retry-After`` of the
    limit's average slot occupancy (up to 30 s), and Prefect's client sleeps that long in real time. On the
    local cloud's virtual clock slots free up in milliseconds: a quarter second caps the wait.

    No flow test reads an event back from the server (the events a flow emits are checked where it emits
    them): :data:`~tests.prefect_home.WITHOUT_EVENT_SERVICES`. Task runs are recorded in batches
    (:data:`~tests.prefect_home.BATCHED_TASK_RUN_RECORDER`): the tests that read them wait until they are.
    """
    return {
        "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "0.25",
        **WITHOUT_EVENT_SERVICES,
        **BATCHED_TASK_RUN_RECORDER,
    }


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[FlowTestServer]:
    """One Prefect server for all flow tests of this process (starting one costs seconds)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    server = _ahead[0] if _ahead else FlowTestServer.spawn()
    if not server.wait_until_healthy(SERVER_STARTUP_TIMEOUT):
        server = FlowTestServer.spawn()  # the early one died (its log is above): one more try
        if not server.wait_until_healthy(SERVER_STARTUP_TIMEOUT):
            raise RuntimeError(f"the Prefect test server exited with {server.process.returncode}")
    with (
        local_server_backoff(),  # the test server is local: its 503s retried in tenths of a second
        # The database too: tests look into it (no secret may be stored there).
        temporary_settings(
            updates={
                PREFECT_API_URL: server.api_url,
                PREFECT_SERVER_DATABASE_CONNECTION_URL: server.database_url,
            }
        ),
    ):
        yield server
        _drain_background_workers()
    server.stop()


def _drain_background_workers() -> None:
    """Send the logs and events still queued before the server goes (Prefect's test harness does the same:
    otherwise they fail on a closed connection at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        with contextlib.suppress(RuntimeError):  # never started
            if inspect.isawaitable(logs := APILogWorker.instance().drain()):
                await logs
        if inspect.isawaitable(events := EventsWorker.drain_all()):
            await events

    run_coro_as_sync(drain())


@pytest.fixture(autouse=True)
def fresh_result_storage() -> None:
    """Each test starts with no cached token and no submission records."""
    from prefect.settings import PREFECT_HOME

    storage = Path(PREFECT_HOME.value()) / "storage"
    shutil.rmtree(storage, ignore_errors=True)


#: Flow modules that also run on one base URL for all services (``pytestmark = BOTH_LAYOUTS``).
BOTH_LAYOUTS = pytest.mark.both_layouts


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every flow test runs with a base URL per service, as on a real cloud; the modules marked
    ``both_layouts`` (the single flow) run again, in the full run, with one base URL for all.

    On a real cloud ECS and IMS are separate hosts whose job paths look alike; a client that works on one
    base URL only (or answers that differ by layout) must fail here, not on a user's first real run. The
    URL building itself is covered layout by layout in tests/client, and every end-to-end test (demo, CLI,
    README, deployments, the fleet's crash tests) runs on one base URL; running all 300-odd flow tests twice
    added only time.
    """
    if "layout" not in metafunc.fixturenames:
        return
    params = [pytest.param("per-service", id="per-service")]
    if metafunc.definition.get_closest_marker("both_layouts") is not None:
        # One base URL for all (the local profile's default): in the full run (CI), not the quick one.
        params.append(pytest.param("one-url", id="one-url", marks=pytest.mark.slow))
    metafunc.parametrize("layout", params, indirect=True)


@pytest.fixture(autouse=True)
def layout(request: pytest.FixtureRequest) -> Iterator[str]:
    """The endpoint layout of this test (see :func:`pytest_generate_tests`)."""
    assert request.param in LAYOUTS
    with endpoint_layout(request.param):
        yield request.param
