"""Test isolation that must happen before Prefect is imported anywhere.

Prefect reads PREFECT_HOME at import time and its test harness does not isolate result storage, so cached
results (tokens, submission records) would leak between runs and into the developer's ~/.prefect.
"""

from __future__ import annotations

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
    yield
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


#: The longest units of work, longest first (worker-seconds of a CI run on 2 cores, 2026-11-28): the e2e stack
#: (~150), the README (~120), the fleet killed with its temporary server (~100), the CLI and crash modules
#: (~70 each), PostgreSQL (~60), the fleet on a long-running server (~50). An xdist group or a file.
LONGEST_FIRST = (
    "e2e-stack",
    "tests/e2e/test_readme.py",
    "tests/e2e/test_fleet_crash.py",
    "tests/e2e/test_cli.py",
    "tests/e2e/test_crash.py",
    "tests/e2e/test_fleet_postgres.py",
    "fleet-crash-long-running-server",
)


def _unit(item: pytest.Item) -> str:
    """The unit of work ``item`` belongs to: its xdist group, else its file."""
    group = item.get_closest_marker("xdist_group")
    if group is not None:
        return str(group.args[0] if group.args else group.kwargs.get("name", ""))
    return item.nodeid.split("::", 1)[0]


def _rank(item: pytest.Item) -> tuple[bool, int]:
    unit = _unit(item)
    rank = LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)
    return (item.get_closest_marker("slow") is None, rank)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, the longest units of work first among them (:data:`LONGEST_FIRST`), otherwise in
    collection order: with xdist one long unit started last would leave the other workers idle while it runs
    alone (longest processing time first)."""
    items.sort(key=_rank)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (pyproject's addopts): a test file is one unit of work, so a module-scoped fixture
    (a wheel build, a local cloud process) is set up on one worker only; tests marked
    ``xdist_group(NAME)`` (tests/e2e: those on the session's running stack) are one unit across files. Units
    are handed out in collection order (``--no-loadscope-reorder``): the slow ones first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    _check_groups_take()
    from xdist.scheduler import LoadFileScheduling

    class FileOrGroup(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):  # xdist appends "@NAME" to a grouped test's ID
                return nodeid.rsplit("@", 1)[-1]
            return nodeid.split("::", 1)[0]

    return FileOrGroup(config, log)


def _check_groups_take() -> None:
    """Refuse the pytest that drops ``xdist_group``: pytest-xdist (3.8, the newest as of 2026-11) names a
    test's group by renaming its node ID to ``ID@NAME``, which :class:`FileOrGroup` reads, and pytest 9.2 no
    longer reads that rename. The tests of the e2e stack would spread over every worker, each starting a stack
    of its own, and nothing would say so (pyproject.toml pins pytest below 9.2)."""
    from importlib.metadata import version

    from packaging.version import Version

    if Version(pytest.__version__) >= Version("9.2") and Version(version("pytest-xdist")) < Version("3.9"):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} ignores pytest-xdist {version('pytest-xdist')}'s xdist_group, "
            "which these tests need: install the versions pyproject.toml pins (pip install -e '.[test]')"
        )


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
