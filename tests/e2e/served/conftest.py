"""One running imsflow installation (Prefect server, local cloud, ``imsflow serve``) for the tests in this
folder: the deployments as ``imsflow serve`` serves them, driven through the API, the UI and the CLI.

The folder is one unit of work (tests/conftest.py, :data:`~tests.conftest.FOLDER_UNITS`): its tests run on
one xdist worker, so the stack starts once per run. The fixture is the package's: the stack stops after the
folder's last test, instead of idling (a Prefect server, a worker and ``imsflow serve`` polling it) until the
worker's other tests are done."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, running_stack


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="imsflow-e2e-") as home, running_stack(Path(home)) as running:
        yield running
