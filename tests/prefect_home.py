"""One migrated Prefect database per test run, copied for each Prefect server a test starts on a new database.

A Prefect server on a new SQLite database first runs its migrations: about 5 s of CPU and 6 s of wall on
2 cores, for every flow-test server, e2e stack and module server (a server on a migrated database is up in
3 s). The run migrates one database, in the background from ``pytest_configure`` of the controller process
(``prefect server database upgrade``, Prefect's own command), and a server whose database is new starts from
a copy of it (:func:`seed_database`). The workers find it through :data:`TEMPLATE_ENV`.

Tests of what a user's first run on a fresh machine does (the README, the wheel, the CLI's first create, the
demo) do not use it: their servers migrate their database as a user's do.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Settings for a test's Prefect server whose tests read no event back and set up no automation: the
#: services that only store events, evaluate automations on them and stream them to websocket subscribers
#: are off. They took 15 % of the server's CPU per create-image run (290 → 247 ms) and, with the fleets'
#: many task runs, a seventh of the flow tests' CPU (223 → 181-203 s, tests/flows on 3 workers, side by
#: side). The task-run recorder stays on: tests read task runs. Not for the servers a user's commands start
#: (the README's, the demo's, the temporary ones) nor the served stack, whose tests read events and fire an
#: automation.
WITHOUT_EVENT_SERVICES = {
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_EVENTS_STREAM_OUT_ENABLED": "false",
}
#: Settings for a test's Prefect server that records task runs in batches. Prefect's default writes each task-
#: run event in a transaction of its own, as it arrives; every flow run makes several (a fleet many), and in
#: the quick loop the recorder fell 3-4 s behind (a test waited that long for its task run; 0.1 s alone).
#: Batches of up to 20, flushed at least every second: tests/flows took 231-247 s of CPU against 292 s and
#: 130-141 s of wall against 165 s (3 workers, side by side). A test that reads task runs back already waits
#: until they are recorded (the recorder writes them a moment after the run, batched or not). Not for the
#: servers a user's commands start.
BATCHED_TASK_RUN_RECORDER = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "20",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}
#: Where the template lives (set by the controller; the xdist workers inherit it).
TEMPLATE_ENV = "TESTS_PREFECT_DATABASE_TEMPLATE"
DATABASE = "prefect.db"
READY, FAILED = "ready", "failed"


def start_template() -> None:
    """Begin migrating the run's template database, in the background (the controller process)."""
    home = Path(tempfile.mkdtemp(prefix="imsflow-prefect-template-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMSFLOW_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    upgrade = shlex.join([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"])
    # The marker is written once the command ended, so a reader never copies a half-written database.
    script = f'{upgrade} >"$0/upgrade.log" 2>&1 && touch "$0/{READY}" || touch "$0/{FAILED}"'
    builder = subprocess.Popen(
        ["bash", "-c", script, home],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    os.environ[TEMPLATE_ENV] = str(home)

    def clean_up() -> None:
        if builder.poll() is None:  # a run shorter than the migration (one unit test): not needed after all
            builder.kill()
            builder.wait()
        shutil.rmtree(home, ignore_errors=True)

    atexit.register(clean_up)


def seed_database(database: Path, timeout: float = 180) -> None:
    """Copy the run's template to ``database``, a Prefect server's SQLite file, unless it exists already.

    Without a template (no pytest controller made one, or its migration failed) nothing is copied: the
    server migrates its database itself, only slower.
    """
    if database.exists():
        return
    template = os.environ.get(TEMPLATE_ENV)
    if not template:
        return
    home = Path(template)
    deadline = time.monotonic() + timeout
    while not (home / READY).exists():
        if (home / FAILED).exists() or time.monotonic() > deadline or not home.exists():
            return
        time.sleep(0.05)
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(home / DATABASE, database)
