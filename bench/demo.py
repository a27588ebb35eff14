"""``imsflow demo`` wall time: cold (fresh PREFECT_HOME: database created and migrated) and warm."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import ROOT, emit


def command() -> list[str]:
    script = Path(sys.executable).parent / "imsflow"
    if script.exists():
        return [str(script), "demo"]
    return [sys.executable, "-m", "cli", "demo"]


def once(home: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMSFLOW_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(home / "prefect"), XDG_CONFIG_HOME=str(home / "config"))
    started = time.monotonic()
    done = subprocess.run(
        command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"imsflow demo failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def main(warm_runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imsflow-bench-demo-") as tmp:
        home = Path(tmp)
        cold = once(home)
        warm = sorted(once(home) for _ in range(warm_runs))
    emit({"cold": cold, "warm": warm[len(warm) // 2], "warm_runs": warm})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
