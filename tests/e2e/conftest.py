"""One running imsflow installation (Prefect server, local cloud, ``imsflow serve``) for the e2e tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, running_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="imsflow-e2e-") as home, running_stack(Path(home)) as running:
        yield running


@pytest.hookimpl(tryfirst=True)  # before xdist names the group in the test's ID
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the running stack go to one xdist worker: one stack per run, not one per worker."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("e2e-stack"))
