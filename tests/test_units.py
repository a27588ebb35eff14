"""How the full run shares out its tests (tests/conftest.py): units of work, the longest first."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import FOLDER_UNITS, LONGEST_FIRST, SPLIT_FILES, unit_of

ROOT = Path(__file__).resolve().parent.parent


def test_a_unit_is_a_folder_a_split_test_or_a_file() -> None:
    assert unit_of("tests/e2e/served/test_ui.py::test_x") == "tests/e2e/served/"
    assert unit_of("tests/e2e/served/test_deployments.py::test_y[a-b]") == "tests/e2e/served/"
    assert unit_of("tests/e2e/test_fleet_crash.py::test_z[p]") == "tests/e2e/test_fleet_crash.py::test_z"
    assert unit_of("tests/flows/test_fleet.py::test_w[per-service]") == "tests/flows/test_fleet.py"


def test_the_longest_units_exist() -> None:
    """A renamed test or file must not fall out of the ordering unnoticed (it would start last)."""
    for folder in FOLDER_UNITS:
        assert (ROOT / folder).is_dir(), folder
    for path in SPLIT_FILES:
        assert (ROOT / path).is_file(), path
    for unit in LONGEST_FIRST:
        path, _, test = unit.partition("::")
        assert (ROOT / path).exists(), unit
        if test:
            assert re.search(rf"^def {test}\(", (ROOT / path).read_text(), re.MULTILINE), unit


def test_only_the_served_folder_starts_the_stack() -> None:
    """The session's stack is a fixture of tests/e2e/served alone: a test elsewhere cannot start another."""
    defining = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tests").rglob("*.py")
        if re.search(r"^def stack\(", p.read_text(), re.MULTILINE)
    ]
    assert defining == ["tests/e2e/served/conftest.py"]
