"""The wheel collides with nothing: only ``imsflow`` and ``imsflow_app`` at the top of site-packages.

The Prefect project's folders (``flows``, ``tasks``, ``runtime``, ``deployments``, ``cli``, ``localcloud``)
travel under ``imsflow_app/``, and ``imsflow_app.activate()`` (which the console script runs) makes them
importable by their own names in imsflow's processes only. The wheel is built from this checkout and
installed into a fresh venv that sees this venv's site-packages for the dependencies, as a plain path: its
``.pth`` files are not read, so the editable install's (which puts the checkout on ``sys.path``) is not
either, and nothing of the checkout can be imported there.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.stack import PREFECT_STARTUP_TIMEOUT, ROOT

pytestmark = pytest.mark.slow

TOP_LEVEL = {"imsflow", "imsflow_app"}
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
FOLDERS = ("flows", "tasks", "runtime", "deployments", "cli", "localcloud")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    umbrella: Path  # site-packages/imsflow_app of the fresh venv
    env: dict[str, str]
    cwd: Path  # an empty directory

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python_code(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(self.python, "-c", textwrap.dedent(code), timeout=timeout)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling (the build backend; `test` extra) is not installed: cannot build the wheel")
    home = tmp_path_factory.mktemp("wheel")
    dist = home / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("imsflow-*.whl")

    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    # A path line, not a site directory: the .pth files over there (the editable install's) are not processed.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    cwd = home / "empty"
    cwd.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "IMSFLOW_", "PYTHON")) and key != "VIRTUAL_ENV"
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PREFECT_HOME=str(home / "prefect"),
        XDG_CONFIG_HOME=str(home / "config"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=PREFECT_STARTUP_TIMEOUT,
    )
    return Installed(wheel=wheel, venv=venv, umbrella=site / "imsflow_app", env=env, cwd=cwd)


def test_only_distinctive_names_at_the_top_of_site_packages(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == TOP_LEVEL
    for folder in FOLDERS:
        assert f"imsflow_app/{folder}/__init__.py" in names
    assert "imsflow_app/deployments/prefect.yaml" in names
    assert "imsflow_app/localcloud/demo_seed.yaml" in names
    assert not any("__pycache__" in name for name in names)
    site = installed.umbrella.parent
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == [
        "dependencies.pth",
        "imsflow",
        "imsflow_app",
    ]


def test_outside_imsflow_its_folders_are_not_importable(installed: Installed) -> None:
    """``import tasks`` in anybody else's process finds another ``tasks``, or none: never imsflow's."""
    out = _ok(
        installed.python_code(
            f"""
            import importlib.util, sys
            import imsflow, imsflow_app
            assert {str(ROOT)!r} not in sys.path, sys.path
            print(imsflow.__file__)
            for name in {FOLDERS!r}:
                spec = importlib.util.find_spec(name)
                print(name, spec.origin if spec else None)
            """
        )
    )
    lines = out.splitlines()
    assert lines[0].startswith(str(installed.umbrella.parent / "imsflow"))
    for line in lines[1:]:
        _name, origin = line.split(" ", 1)
        assert origin == "None" or not origin.startswith((str(ROOT), str(installed.umbrella))), line


def test_activated_the_folders_are_imsflows_here_and_in_the_processes_it_starts(installed: Installed) -> None:
    """What ``imsflow serve`` relies on: every deployment of prefect.yaml builds, and a flow-run subprocess
    loads its flow by module path the way Prefect's runner does (``load_flow_from_entrypoint``)."""
    out = _ok(
        installed.python_code(
            f"""
            import subprocess, sys
            import imsflow_app
            print(imsflow_app.activate())
            for name in {FOLDERS!r}:
                print(__import__(name).__file__)
            from deployments.serve import build_deployments
            built, skipped = build_deployments()
            assert not skipped, skipped
            print(len(built), "deployments", flush=True)
            child = (
                "import sys; from prefect.flows import load_flow_from_entrypoint; "
                "flow = load_flow_from_entrypoint('flows.create_image.create_image_from_ecs'); "
                "assert {str(ROOT)!r} not in sys.path; "
                "print(flow.name, sys.modules['flows.create_image'].__file__)"
            )
            subprocess.run([sys.executable, "-c", child], check=True)
            """,
            timeout=180,
        )
    )
    lines = out.splitlines()
    assert lines[0] == str(installed.umbrella)
    for line in lines[1 : 1 + len(FOLDERS)]:
        assert line.startswith(str(installed.umbrella)), line
    assert f"{len(yaml.safe_load(PREFECT_YAML.read_text())['deployments'])} deployments" in lines
    assert lines[-1] == f"create-image-from-ecs {installed.umbrella / 'flows' / 'create_image.py'}"


def test_the_console_script_runs_the_demo(installed: Installed) -> None:
    imsflow = installed.venv / "bin" / "imsflow"
    assert "Usage" in _ok(installed.run(imsflow, "--help"))
    try:
        out = _ok(installed.run(imsflow, "demo", timeout=240))
    finally:
        installed.run(imsflow, "ui", "--stop")  # the demo leaves its Prefect server running for the next one
    assert re.search(r"image [0-9a-f-]{36} \(.+\) is active", out), out
