"""README followed literally: its shell blocks run as written against the local cloud.

Every ```bash block of README.md is preceded by a marker saying how it is checked:

* ``<!-- readme-check: run -->``: run as written, in README order, in one bash session (``set -e``: any
  command failing fails the test), with a fresh ``PREFECT_HOME``, no ``IMSFLOW_*`` or ``PREFECT_*`` of the
  developer's, and the checkout's venv first on ``PATH`` (as after the README's first command);
* ``<!-- readme-check: run; the last command serves: until "TEXT" -->``: the same, but the block's last
  command runs for ever (a server, a worker): it is started in the background and the session goes on once
  its output shows TEXT;
* ``<!-- readme-check: synopsis -->``: a command line with placeholders (``ID``, ``IMAGE_ID``): every
  ``--option`` of its ``imsflow`` commands must be one the command's ``--help`` lists;
* ``<!-- readme-check: skip: WHY -->``: not run here, with the reason (a real cloud, several machines, CI).

A block without a marker fails the test: a new README example must say how it is checked. The session uses
the README's own fixed ports (the local cloud on 8780, Prefect on 4200): it is skipped when they are taken.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stack import ROOT

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme-check: (run|synopsis|skip)(?:(?::|;) (.*?))? -->")
SERVES = re.compile(r'the last command serves: until "([^"]+)"')
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


@dataclass
class Block:
    number: int
    line: int
    kind: str  # run | synopsis | skip
    note: str
    text: str

    @property
    def until(self) -> str | None:
        found = SERVES.search(self.note)
        return found.group(1) if found else None


def blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```bash"):
            start = i
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            marker = MARKER.fullmatch(lines[start - 1].strip()) if start else None
            kind, note = (marker.group(1), marker.group(2) or "") if marker else ("", "")
            found.append(Block(len(found) + 1, start + 1, kind, note, "\n".join(lines[start + 1 : j])))
            i = j
        i += 1
    return found


def test_every_readme_block_says_how_it_is_checked() -> None:
    unmarked = [f"line {b.line}" for b in blocks() if not b.kind]
    assert not unmarked, f"README bash blocks with no readme-check marker: {', '.join(unmarked)}"
    assert all(b.note for b in blocks() if b.kind == "skip"), "a skipped block says why"


def _commands(text: str) -> list[list[str]]:
    """The ``imsflow`` command lines of a block (continuations joined, comments dropped)."""
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value imsflow ...
            words = words[1:]
        if words and words[0] == "imsflow":
            out.append(words)
    return out


def test_synopsis_blocks_use_only_options_the_commands_have() -> None:
    helps: dict[str, str] = {}
    for block in blocks():
        if block.kind != "synopsis":
            continue
        for words in _commands(block.text):
            command = words[1]
            if command not in helps:
                done = subprocess.run(
                    [sys.executable, "-m", "cli", command, "--help"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "COLUMNS": "200"},
                    timeout=60,
                    check=True,
                )
                helps[command] = done.stdout
            used = {o for word in words[2:] for o in OPTION.findall(word.split("=")[0])}
            unknown = sorted(o for o in used if not re.search(rf"{re.escape(o)}\b", helps[command]))
            assert not unknown, f"README line {block.line}: `imsflow {command}` has no {', '.join(unknown)}"


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


SERVE = """
# readme_serve TEXT LOG COMMAND...: start COMMAND in the background, go on once LOG shows TEXT
readme_serve() {
  local text=$1 log=$2; shift 2
  "$@" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1200); do
    grep -q "$text" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "exited before \\"$text\\":"; cat "$log"; return 1; }
    sleep 0.1
  done
  echo "no \\"$text\\" within 120 s:"; cat "$log"; return 1
}
"""


def _script(logs: Path) -> str:
    parts = ["set -euo pipefail", SERVE]
    for block in blocks():
        if block.kind != "run":
            continue
        lines = block.text.splitlines()
        if block.until:
            last = len(lines) - 1
            lines[last] = f'readme_serve "{block.until}" "{logs}/block-{block.number}.log" {lines[last]}'
        parts.append(f'echo "=== README block {block.number} (line {block.line})"')
        parts.append("\n".join(lines))
    return "\n".join(parts) + "\n"


def test_the_runnable_blocks_run_as_written(tmp_path: Path) -> None:
    taken = [p for p in (8780, 4200) if _port_taken(p)]
    if taken:
        pytest.skip(f"README's fixed ports are taken: {taken}")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMSFLOW_", "VIRTUAL_ENV"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        PREFECT_HOME=str(home / ".prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    script = tmp_path / "readme.sh"
    script.write_text(_script(tmp_path), encoding="utf-8")
    output = tmp_path / "readme.out"
    with output.open("w") as sink:
        # A file, not a pipe: the servers the script starts in the background keep their stdout open.
        proc = subprocess.Popen(
            ["bash", str(script)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the servers it starts in the background go with it
        )
        try:
            proc.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    out = output.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, f"a README command failed as written:\n{out}"
    assert "Traceback" not in out, out
    assert "FutureWarning" not in out, out  # e.g. `prefect deploy` on a deployment with `schedules: []`
    ran = {int(n) for n in re.findall(r"=== README block (\d+) \(line \d+\)", out)}
    assert ran == {b.number for b in blocks() if b.kind == "run"}, "every runnable block ran"
    text = " ".join(out.split())
    assert re.search(r"image [0-9a-f-]{36} is active", text), text  # block 7's create
    assert "Flow run finished successfully in 'Completed'" in text  # block 10's run, through the worker
    assert "3 ECSs, 0 failed" in text  # block 15's nightly fleet
    assert "imsflow-ims-jobs 0 of 40 IMS job slots held" in text
