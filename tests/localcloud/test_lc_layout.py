"""The local cloud's layout: state apart from HTTP, no import cycle, never imsflow."""

from __future__ import annotations

import ast
from pathlib import Path

import localcloud

ROOT = Path(localcloud.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module an import names (top level, in functions, under TYPE_CHECKING)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_import_cycle_inside_localcloud() -> None:
    modules = _modules()
    graph = {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for target in graph[module]:
            visit(target, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_never_imsflow() -> None:
    for module, path in _modules().items():
        assert not any(n.split(".")[0] == "imsflow" for n in _imports(path)), module


def test_state_modules_know_no_http() -> None:
    for service in ("iam", "ecs", "ims"):
        names = _imports(ROOT / service / "state.py")
        http = {n for n in names if n.split(".")[0] in ("fastapi", "starlette", "httpx")}
        wire = {n for n in names if n.startswith(("localcloud.gateway", "localcloud.app")) or "wire" in n}
        assert not http | wire, (service, http | wire)
