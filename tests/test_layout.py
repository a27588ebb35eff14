"""One house: the arrows between the top-level packages point down, and no import goes round in a circle.

    cli ──► deployments ──► flows ──► tasks ──► runtime ──► imsflow
     └──► localcloud

``runtime`` is what the steps and flows run on (settings, retries, auth, records, locks, limits, blocks,
events); ``tasks`` holds the steps only. A package may import any package below it, never one above it, and
nothing imports ``cli``. The library's own rule (not even Prefect) is tests/client/test_imports.py, the local
cloud's tests/localcloud/test_lc_layout.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.test_imports import imported_packages

ROOT = Path(__file__).resolve().parents[1]

#: What each top-level package may import of the others (anywhere in a module, functions included).
MAY_IMPORT: dict[str, set[str]] = {
    "imsflow": set(),
    "localcloud": set(),
    "runtime": {"imsflow"},
    "tasks": {"runtime", "imsflow"},
    "flows": {"tasks", "runtime", "imsflow"},
    "deployments": {"flows", "tasks", "runtime", "imsflow"},
    "cli": {"deployments", "flows", "tasks", "runtime", "imsflow", "localcloud"},
    # The console script's bootstrap: it finds the folders (in a wheel, under it) and calls the CLI.
    "imsflow_app": {"cli"},
}
PACKAGES = set(MAY_IMPORT)

MODULES = sorted(p for package in MAY_IMPORT for p in (ROOT / package).rglob("*.py"))


def _package(path: Path) -> str:
    return path.relative_to(ROOT).parts[0]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_arrows_point_down(path: Path) -> None:
    own = _package(path)
    bad = [
        f"line {line}: {package}"
        for line, package in imported_packages(path)
        if package in PACKAGES and package != own and package not in MAY_IMPORT[own]
    ]
    assert not bad, f"{path.relative_to(ROOT)} ({own}) imports {', '.join(bad)}"


def _called(decorator: ast.expr) -> str:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return target.id if isinstance(target, ast.Name) else ast.unparse(target)


def test_tasks_holds_steps_and_runtime_the_plumbing() -> None:
    """Every module of ``tasks/`` defines a step (a ``@task``); the plumbing lives in ``runtime/``."""
    for path in sorted((ROOT / "tasks").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        names = {
            _called(decorator)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for decorator in node.decorator_list
        }
        assert "task" in names, f"tasks/{path.name} holds no step: its place is runtime/"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_edges(path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``path`` imports when it is imported (module level, not under TYPE_CHECKING)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in known}


def test_no_import_circle() -> None:
    names = {_module_name(p): p for p in MODULES}
    edges = {name: _import_time_edges(path, set(names)) - {name} for name, path in names.items()}
    done: set[str] = set()

    def walk(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import circle: " + " → ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for target in sorted(edges[name]):
            walk(target, [*trail, name])
        done.add(name)

    for name in sorted(edges):
        walk(name, [])


def test_the_circle_check_sees_a_circle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import c\nimport a\n"
    )
    assert _import_time_edges(tmp_path / "a.py", {"a", "b", "c"}) == {"b"}
    assert _import_time_edges(tmp_path / "b.py", {"a", "b", "c"}) == {"a"}


def test_import_runtime_is_light() -> None:
    """``import runtime`` (settings, clock, reporters) loads no Prefect and none of the packages above it."""
    code = (
        "import sys, runtime\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prefect', 'tasks', 'flows', 'deployments', 'cli', 'localcloud'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
