"""Run every benchmark, each against its baseline in the same run; print a markdown table, write RESULTS.md.

    python bench/run.py            # full: 50 token runs, 500-ECS fleet, ... (about 10 minutes)
    python bench/run.py --quick    # smaller sizes (about 3 minutes); writes bench/RESULTS-quick.md

Each benchmark runs in its own process (fresh PREFECT_HOME, its own local cloud) and prints one
``BENCH-RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import machine  # noqa: E402

FULL = {"token_calls": 50, "polling": 20, "flow_overhead": 3, "fleet": 500, "demo": 3}
QUICK = {"token_calls": 10, "polling": 5, "flow_overhead": 1, "fleet": 100, "demo": 1}


def run(name: str, size: int) -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(HERE / f"{name}.py"), str(size)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if done.returncode != 0 or not lines:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        return {"error": f"{name} failed with exit code {done.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
    print(f"  {name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return result


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    t = results["token_calls"]
    if "error" not in t:
        label = (
            f"IAM token calls, {t['runs']} runs × {t['tasks']} concurrent tasks ({t['at_once']} runs at once)"
        )
        out.append(
            (label, str(t["calls"]), "1", f"{t['baseline_calls']} (a token per run)", mark(t["calls"] == 1))
        )
    p = results["polling"]
    if "error" not in p:
        for size, v in p["sizes"].items():
            ratio = v["calls"] / v["fixed_calls"]
            out.append(
                (
                    f"status calls per job, {size} job (virtual time, {p['jobs_per_size']} jobs each)",
                    f"{v['calls']:.1f} ({ratio:.2f}×)",
                    "≤ 0.4×",
                    f"{v['fixed_calls']:.1f} (fixed 10 s)",
                    mark(ratio <= 0.4),
                )
            )
            out.append(
                (
                    f"median detection delay, {size} job",
                    f"{v['delay']:.1f} s",
                    "≤ 3 s",
                    f"{v['fixed_delay']:.1f} s (fixed 10 s)",
                    mark(v["delay"] <= 3),
                )
            )
        total = sum(v["calls"] for v in p["sizes"].values())
        fixed = sum(v["fixed_calls"] for v in p["sizes"].values())
        out.append(
            (
                "status calls, the three sizes together",
                f"{total:.1f} ({total / fixed:.2f}×)",
                "≤ 0.4×",
                f"{fixed:.1f}",
                mark(total / fixed <= 0.4),
            )
        )
    f = results["flow_overhead"]
    if "error" not in f:
        out.append(
            (
                f"single-image flow wall, job {f['job_seconds']:.0f} s (median of {f['repeats']})",
                f"{f['flow_wall']:.1f} s ({f['ratio']:.3f}×)",
                "≤ 1.05×",
                f"{f['bare_wall']:.1f} s (bare httpx, same calls)",
                mark(f["ratio"] <= 1.05),
            )
        )
    fl = results["fleet"]
    if "error" not in fl:
        out += [
            (
                f"fleet of {fl['ecs']} ECSs, job {fl['job_seconds']:.0f} s, cap {fl['cap']}: wall",
                f"{fl['wall']:.1f} s ({fl['ratio']:.2f}×)",
                "≤ 1.15× ideal",
                f"{fl['ideal']:.0f} s (ideal ceil(N/{fl['cap']})×{fl['job_seconds']:.0f} s)",
                mark(fl["ratio"] <= 1.15 and fl["failed"] == 0),
            ),
            ("fleet: IAM token calls", str(fl["token_calls"]), "1", "—", mark(fl["token_calls"] == 1)),
            (
                "fleet: peak RSS of the flow process",
                f"{fl['peak_rss_mb']:.0f} MB",
                "≤ 500 MB",
                "—",
                mark(fl["peak_rss_mb"] <= 500),
            ),
            (
                f"fleet: HTTP 429 (cloud limit {fl.get('cloud_rps', '?')}/s, budget {fl.get('budget_rps', '?')}/s)",
                str(fl["rate_limited_429"]),
                "0",
                f"{fl['requests']} requests, {fl['requests_per_second']:.1f}/s average",
                mark(fl["rate_limited_429"] == 0),
            ),
        ]
        out += set_rows(fl)
    d = results["demo"]
    if "error" not in d:
        temporary, reused = d["temporary"], d["reused"]
        out += [
            (
                "`imsflow demo` cold (fresh PREFECT_HOME; starts the background server)",
                f"{reused['cold']:.1f} s",
                "≤ 15 s",
                f"{temporary['cold']:.1f} s (Prefect's temporary server)",
                mark(reused["cold"] <= 15),
            ),
            (
                f"`imsflow demo` warm (background server running; median of {len(reused['warm_runs'])})",
                f"{reused['warm']:.1f} s",
                "≤ 6 s",
                f"{temporary['warm']:.1f} s (Prefect's temporary server)",
                mark(reused["warm"] <= 6),
            ),
        ]
    for name, result in results.items():
        if "error" in result:
            out.append((name, result["error"], "", "", "❌"))
    return out


def set_rows(fl: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The fleet of system + data-disk image sets, as ratios to the system-only fleet of the same run."""
    st = fl.get("sets")
    if not st:
        return []
    n = st["ecs"]
    return [
        (
            f"fleet of {n} image sets (system + {st['data_disks']} data disks each), job {fl['job_seconds']:.0f} s, "
            f"cap {fl['cap']}: wall",
            f"{st['wall']:.1f} s ({st['ratio']:.2f}×)",
            "≤ 2.2× (ideal 2×: two jobs per ECS in turn)",
            f"{st['baseline_wall']:.1f} s (the system-only fleet above)",
            mark(st["ratio"] <= 2.2 and st["failed"] == 0),
        ),
        (
            "sets: POSTs and images per ECS",
            f"{st['posts_per_ecs']:.2f} POSTs, {st['images'] / n:.2f} images",
            f"2, {1 + st['data_disks']}",
            "1 POST, 1 image (system only)",
            mark(st["posts"] == 2 * n and st["images"] == (1 + st["data_disks"]) * n),
        ),
        (
            "sets: status calls",
            f"{st['status_calls']} ({st['status_calls_ratio']:.2f}×)",
            "≤ 2.2× (two jobs per ECS)",
            f"{fl['status_calls']} (system only)",
            mark(st["status_calls_ratio"] <= 2.2),
        ),
        (
            f"sets: IAM token calls; HTTP 429 (cloud limit {fl.get('cloud_rps', '?')}/s)",
            f"{st['token_calls']}; {st['rate_limited_429']}",
            "1; 0",
            f"{st['requests']} requests, {st['requests_per_second']:.1f}/s average",
            mark(st["token_calls"] == 1 and st["rate_limited_429"] == 0),
        ),
    ]


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| measure | result | target | baseline | met |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows(results)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; writes RESULTS-quick.md")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    facts = machine()
    started = time.monotonic()
    results = {name: run(name, size) for name, size in sizes.items()}
    facts["total"] = f"{time.monotonic() - started:.0f} s"
    md = table(results)
    print(md)
    header = ", ".join(f"{k} {v}" for k, v in facts.items())
    out = HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    out.write_text(
        f"# Benchmark results ({'quick' if args.quick else 'full'} run)\n\n"
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {header}\n\n{md}\n\n"
        f"<details><summary>raw</summary>\n\n```json\n{json.dumps(results, indent=1)}\n```\n</details>\n"
    )
    print(f"\nwritten to {out.relative_to(HERE.parent)}", file=sys.stderr)


if __name__ == "__main__":
    main()
