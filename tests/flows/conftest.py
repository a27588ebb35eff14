from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LAYOUTS, endpoint_layout


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for all flow tests (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    # Generous: on a busy 2-core machine the server can take minutes to start (Prefect's default: 20 s).
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def fresh_result_storage() -> None:
    """Each test starts with no cached token and no submission records."""
    from prefect.settings import PREFECT_HOME

    storage = Path(PREFECT_HOME.value()) / "storage"
    shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture(
    autouse=True,
    params=[
        # A base URL per service, as on a real cloud: the quick loop's layout.
        pytest.param("per-service", id="per-service"),
        # One base URL for all (the local profile's default): in the full run (CI), not the quick one.
        pytest.param("one-url", id="one-url", marks=pytest.mark.slow),
    ],
)
def layout(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every flow test runs twice: one base URL for all services, and a base URL per service.

    On a real cloud ECS and IMS are separate hosts whose job paths look alike; a client that works on one
    base URL only (or answers differ by layout) must fail here, not on a user's first real run.
    """
    assert request.param in LAYOUTS
    with endpoint_layout(request.param):
        yield request.param
