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
