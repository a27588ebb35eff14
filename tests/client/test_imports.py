"""The client library stands alone: no Prefect, no local cloud, nothing of the layers above it.

The house: ``cli`` (the command line) uses ``deployments``, ``flows``, ``tasks``, ``runtime``, ``localcloud``
and the client library ``imsflow``; the library uses none of them, not even inside a function or for type
checking (the arrows between the others: tests/test_layout.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "imsflow"
#: Top-level packages the library must never import.
ABOVE = {"prefect", "runtime", "tasks", "flows", "deployments", "cli", "localcloud"}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in the module, anywhere in it, as (line, top-level package)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


LIBRARY_MODULES = sorted(LIBRARY.rglob("*.py"))


def test_the_library_has_its_modules() -> None:
    names = {p.relative_to(LIBRARY).as_posix() for p in LIBRARY_MODULES}
    assert {"client.py", "settings.py", "doctor.py", "redact.py"} <= names
    assert not (LIBRARY / "cli.py").exists(), "the CLI lives in cli/"
    assert not (LIBRARY / "commands").exists(), "the CLI lives in cli/"


@pytest.mark.parametrize("path", LIBRARY_MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_library_module_imports_nothing_above_it(path: Path) -> None:
    bad = [f"line {line}: {package}" for line, package in imported_packages(path) if package in ABOVE]
    assert not bad, f"{path.relative_to(ROOT)} imports {', '.join(bad)}"


def test_the_check_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import imsflow.client\n"
        "if TYPE_CHECKING:\n    from prefect.states import State\n"
        "def f():\n    import runtime.retry\n    from cli.app import app\n"
        "    return importlib.import_module('flows.fleet')\n"
    )
    assert {package for _, package in imported_packages(module)} == {
        "typing",
        "imsflow",
        "prefect",
        "runtime",
        "cli",
        "flows",
    }


def _loaded_after(imports: str) -> list[str]:
    code = (
        f"import sys\n{imports}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prefect', 'localcloud', 'fastapi', 'runtime', 'flows', 'tasks', 'deployments'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return [m for m in result.stdout.strip().split(",") if m]


def test_client_modules_do_not_import_prefect_or_localcloud() -> None:
    assert (
        _loaded_after(
            "import imsflow, imsflow.client, imsflow.settings, imsflow.models, imsflow.auth, imsflow.errors\n"
            "import imsflow.validation, imsflow.redact, imsflow.polling, imsflow.doctor"
        )
        == []
    )


def test_the_cli_imports_prefect_and_the_flows_only_when_a_command_runs() -> None:
    # `imsflow --help` and `imsflow config` stay fast.
    assert _loaded_after("import cli.main") == []
