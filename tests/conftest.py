"""Test isolation that must happen before Prefect is imported anywhere.

Prefect reads PREFECT_HOME at import time and its test harness does not isolate result storage, so cached
results (tokens, submission records) would leak between runs and into the developer's ~/.prefect.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest

_home = Path(tempfile.mkdtemp(prefix="imsflow-tests-"))
os.environ["PREFECT_HOME"] = str(_home / "prefect")
os.environ["XDG_CONFIG_HOME"] = str(_home / "config")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "CRITICAL")
# Prefect builds a TLS context from certifi's whole CA bundle for every API client it opens (about 17 ms of
# CPU; a flow test opens several). Its test servers speak plain http on 127.0.0.1: one CA serves as well.
_ca = _home / "ca.pem"
_bundle = Path(certifi.where()).read_text()
_ca.write_text(_bundle[: _bundle.index("-----END CERTIFICATE-----")] + "-----END CERTIFICATE-----\n")
os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", str(_ca))
# A developer's own IMSFLOW_* settings must not steer the tests.
for _name in [n for n in os.environ if n.startswith("IMSFLOW_")]:
    del os.environ[_name]


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    """Every test starts from the default runtime and empty process-wide caches (``runtime.reset``): no test
    sees the settings, token successors, project IDs or retry test mode another test left behind."""
    import runtime  # here, not at the top: it reads nothing of Prefect's, but keep this module first

    runtime.reset()
    # A command run in-process (CliRunner) quiets failing log handlers for the rest of its process
    # (cli.app.quiet_prefect): the next test gets Python's default back.
    raise_exceptions = logging.raiseExceptions
    yield
    logging.raiseExceptions = raise_exceptions
    runtime.reset()


def pytest_configure(config: pytest.Config) -> None:
    """The controller (or the only process) starts migrating the run's Prefect database template at once,
    so that it is ready by the time the first test server needs it (tests/prefect_home.py)."""
    if hasattr(config, "workerinput") or config.option.collectonly or config.option.help:
        return
    from tests.prefect_home import start_template

    start_template()


def pytest_report_header() -> str:
    return f"imsflow test home: {_home}"


#: Folders whose tests are one unit of work: tests/e2e/served shares one running stack (its conftest).
FOLDER_UNITS = ("tests/e2e/served/",)
#: Files whose tests are each a unit of their own: long tests with function-scoped fixtures only.
SPLIT_FILES = ("tests/e2e/test_fleet_crash.py",)
#: The longest units of work, longest first (worker-seconds of a CI run on 2 cores, 2026-11-28): the served
#: stack (~150), the README (~140), the fleet killed with its temporary server (~85), the CLI and crash
#: modules (~70-90 each), PostgreSQL (~50-60), the fleet on a long-running server (~50).
_FLEET_CRASH = "tests/e2e/test_fleet_crash.py::test_"
LONGEST_FIRST = (
    "tests/e2e/served/",
    "tests/e2e/test_readme.py",
    f"{_FLEET_CRASH}fleet_killed_three_times_with_its_temporary_server_then_rerun_and_a_new_fleet",
    "tests/e2e/test_cli.py",
    "tests/e2e/test_crash.py",
    "tests/e2e/test_fleet_postgres.py",
    f"{_FLEET_CRASH}long_running_server_restarted_mid_fleet_and_a_fleet_killed_on_it",
)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its folder (:data:`FOLDER_UNITS`), itself (:data:`SPLIT_FILES`),
    else its file. A unit runs on one xdist worker, so a module- or session-scoped fixture of it is set up
    once."""
    path = nodeid.split("::", 1)[0]
    for folder in FOLDER_UNITS:
        if path.startswith(folder):
            return folder
    if path in SPLIT_FILES:
        return nodeid.split("[", 1)[0]
    return path


def _rank(item: pytest.Item) -> tuple[bool, int]:
    unit = unit_of(item.nodeid)
    rank = LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)
    return (item.get_closest_marker("slow") is None, rank)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, the longest units of work first among them (:data:`LONGEST_FIRST`), otherwise in
    collection order: with xdist one long unit started last would leave the other workers idle while it runs
    alone (longest processing time first)."""
    items.sort(key=_rank)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (pyproject's addopts), by :func:`unit_of`: a file is a unit of work, so that a
    module-scoped fixture (a wheel build, a local cloud process) is set up on one worker only; a folder of
    :data:`FOLDER_UNITS` is one unit, a test of :data:`SPLIT_FILES` a unit of its own. Units are handed out
    in collection order (``--no-loadscope-reorder``): the slow ones first.

    Not ``xdist_group``: pytest-xdist (3.8) groups by renaming a test's node ID, which pytest 9.2 ignores."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Units(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return Units(config, log)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n logical`` (pyproject's addopts): a worker per core, and one more when the slow tests run.

    The end-to-end tests spend much of their time waiting (for processes to start, for a local cloud's
    real-clock jobs, for the browser): a worker beyond the cores runs tests in those gaps. Measured on 2 cores
    (tests/e2e, the same load beside): 3 workers 348 s, 2 workers 423 s. The quick loop (``-m "not slow"``)
    only computes, and an extra worker (with its own Prefect test server) costs it: 2 workers 77-81 s, 3
    workers 84-86 s. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    cores = len(os.sched_getaffinity(0))
    quick = "not slow" in (config.option.markexpr or "")
    return cores if quick else cores + 1
