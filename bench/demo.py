"""``imsflow demo`` wall time on Prefect's temporary server (the baseline) and on the background server it reuses.

For each, cold (a fresh PREFECT_HOME: database created and migrated; for the reused server, no server yet, so
the demo starts one) and warm (the same home again; for the reused server, the server is running). The warm
runs of the two alternate, so that both see the same load. Each mode has its own PREFECT_HOME; the background
server is stopped at the end (``imsflow ui --stop``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import ROOT, emit

MODES = {"temporary": ["demo", "--temporary-server"], "reused": ["demo"]}


def command(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "imsflow"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "cli", *args]


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMSFLOW_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(home / "prefect"), XDG_CONFIG_HOME=str(home / "config"))
    return env


def once(home: Path, args: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(
        command(*args),
        cwd=ROOT,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"imsflow {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    if args == MODES["reused"] and "/runs/flow-run/" not in done.stdout:
        raise RuntimeError(f"imsflow demo printed no link to its run: {done.stdout[-2000:]}")
    return wall


def main(warm_runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imsflow-bench-demo-") as tmp:
        homes = {mode: Path(tmp) / mode for mode in MODES}
        for path in homes.values():
            path.mkdir()  # Prefect makes PREFECT_HOME, not its parents
        try:
            cold = {mode: once(homes[mode], args) for mode, args in MODES.items()}
            warm: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(warm_runs):
                for mode, args in MODES.items():
                    warm[mode].append(once(homes[mode], args))
        finally:
            subprocess.run(
                command("ui", "--stop"),
                cwd=ROOT,
                env=environment(homes["reused"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
    result: dict[str, dict[str, object]] = {}
    for mode in MODES:
        runs = sorted(warm[mode])
        result[mode] = {"cold": cold[mode], "warm": runs[len(runs) // 2], "warm_runs": runs}
    emit(result)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
