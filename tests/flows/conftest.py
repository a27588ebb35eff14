from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for all flow tests (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(autouse=True)
def fresh_result_storage() -> None:
    """Each test starts with no cached token and no submission records."""
    from prefect.settings import PREFECT_HOME

    storage = Path(PREFECT_HOME.value()) / "storage"
    shutil.rmtree(storage, ignore_errors=True)
