"""The Prefect server imsflow leaves running in the background, so that the next run starts at once.

Prefect's temporary server costs 5-12 s at every command (more on a busy machine) and is gone when the run
ends, UI included. ``imsflow demo`` (and ``imsflow ui``) start a ``prefect server``, with its UI, on a free
port of 127.0.0.1 instead, detached from the terminal, and record it in ``$PREFECT_HOME/imsflow-server.json``
(its PID and URL); the next command finds it alive (the PID runs this module, the API answers) and reuses it.
A stale record (the process gone, or another process under its PID) means a new server. ``imsflow ui --stop``
stops it.

The server process (``python -c ... cli.background.serve``) runs Prefect's own app under uvicorn, on a socket
the starting command bound and handed over (no port race), and stops by itself when its record is removed
(``imsflow ui --stop``, or ``PREFECT_HOME`` deleted: a test's temporary home) or when no request reached it
for ``IMSFLOW_SERVER_IDLE_MINUTES`` (default 30; an open UI page keeps asking, so it counts as use).

Nothing here imports Prefect at module level: finding the server must cost milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

RECORD_NAME = "imsflow-server.json"
LOCK_NAME = "imsflow-server.lock"
LOG_NAME = "imsflow-server.log"
IDLE_SETTING = "IMSFLOW_SERVER_IDLE_MINUTES"
IDLE_MINUTES = 30.0
#: Seconds to wait for a new server to answer (database created and migrated on a busy machine included).
STARTUP_TIMEOUT_SECONDS = 120.0
#: How often the server checks its record and its idle time.
WATCH_SECONDS = 1.0
#: What identifies our server process on its command line (a PID reused by another process is not ours).
MARK = "cli.background"

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(Exception):
    """The background server did not start; the message says why in one line, ``hint`` what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Record:
    """A background server: its process, its base URL (the UI; the API is under ``/api``) and home."""

    pid: int
    url: str
    home: str
    started: float

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def prefect_home() -> Path:
    """``PREFECT_HOME`` as Prefect reads it from the environment (default ``~/.prefect``)."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def configured_api_url(home: Path | None = None) -> str | None:
    """The user's own ``PREFECT_API_URL``: the environment's, else the active profile's (profiles.toml)."""
    if url := os.environ.get("PREFECT_API_URL"):
        return url
    try:
        profiles = tomllib.loads(((home or prefect_home()) / "profiles.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    profile = profiles.get("profiles", {}).get(active, {}) if isinstance(active, str) else {}
    url = profile.get("PREFECT_API_URL") if isinstance(profile, dict) else None
    return url if isinstance(url, str) and url else None


def record_path(home: Path) -> Path:
    return home / RECORD_NAME


def read_record(home: Path) -> Record | None:
    try:
        data = json.loads(record_path(home).read_text(encoding="utf-8"))
        return Record(
            pid=int(data["pid"]), url=str(data["url"]), home=str(data["home"]), started=float(data["started"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(home: Path, record: Record) -> None:
    path = record_path(home)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(record)), encoding="utf-8")
    temporary.replace(path)


def remove_record(home: Path, pid: int) -> None:
    """Remove the record if it still names ``pid`` (a newer server's record is left alone)."""
    record = read_record(home)
    if record is not None and record.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            record_path(home).unlink()


def ours(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process running this module's server."""
    import psutil  # 20 ms: only when there is a record to check

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and any(MARK in part for part in process.cmdline())
    except psutil.Error:
        return False


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect server at ``url`` (its base, without ``/api``) answers its health check."""
    return api_healthy(f"{url}/api", timeout)


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``api_url`` (``PREFECT_API_URL``) answers its health check."""
    try:
        with _NO_PROXY.open(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def await_health(
    answers: Callable[[float], bool],
    alive: Callable[[], bool],
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> Literal["healthy", "exited", "silent"]:
    """Wait until a server answers its health check (``answers(seconds)``): ``"healthy"``; ``"exited"`` once
    ``alive()`` says its process is gone; ``"silent"`` after ``timeout`` seconds of ``clock``.

    A server on a socket bound before it started (the background one, the temporary one) has it listening
    from the start: a health check waits in the backlog until the server serves it.
    """
    deadline = clock() + timeout
    while True:
        remaining = deadline - clock()
        asked = time.monotonic()
        if answers(max(0.1, min(1.0, remaining))):
            return "healthy"
        if not alive():
            return "exited"
        if remaining <= 0:
            return "silent"
        if time.monotonic() - asked < 0.1:  # refused at once (not listening yet): do not spin
            threading.Event().wait(0.1)


def find(home: Path | None = None) -> Record | None:
    """The background server of ``home`` if it runs and answers; ``None`` if none (or a stale record)."""
    record = read_record(home or prefect_home())
    if record is None or not ours(record.pid) or not healthy(record.url):
        return None
    return record


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One command at a time decides whether to start a server (two demos at once share one)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK_NAME).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Starting:
    """A server found, or on its way up: :meth:`wait` returns it once it answers."""

    def __init__(self, record: Record, process: subprocess.Popen[bytes] | None, started_now: bool) -> None:
        self.record = record
        self.process = process
        #: True when this command started the server (False: it was running, or another command started it).
        self.started_now = started_now

    def wait(
        self, timeout: float = STARTUP_TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> Record:
        """Wait until the server answers; :class:`ServerError` when it exits or does not answer in time."""

        def answers(wait: float) -> bool:
            return healthy(self.record.url, timeout=wait)

        outcome = await_health(answers, lambda: ours(self.record.pid), timeout=timeout, clock=clock)
        if outcome == "exited":
            raise ServerError(
                f"the background Prefect server exited before it answered{self._log_tail()}",
                hint=f"see {Path(self.record.home) / LOG_NAME}; `imsflow demo --temporary-server` runs "
                "without it",
            )
        if outcome == "silent":
            raise ServerError(
                f"the background Prefect server did not answer within {timeout:.0f} s (is the machine busy?)",
                hint=f"see {Path(self.record.home) / LOG_NAME}; `imsflow ui --stop` stops it",
            )
        return self.record

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = (Path(self.record.home) / LOG_NAME).read_text(errors="replace").strip().splitlines()
            if lines:
                return f": {lines[-1][:300]}"
        return ""


def find_or_start(home: Path | None = None) -> Starting:
    """The running background server of ``home``, or a new one starting (call :meth:`Starting.wait`)."""
    home = home or prefect_home()
    with _locked(home):
        record = read_record(home)
        if record is not None and ours(record.pid):
            return Starting(record, None, started_now=False)  # running, or still starting for another command
        return _spawn(home)


def _spawn(home: Path) -> Starting:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env["PREFECT_HOME"] = str(home)
        with (home / LOG_NAME).open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 (this Python, our module, an fd number)
                [
                    sys.executable,
                    "-c",
                    f"import imsflow_app; imsflow_app.activate(); import {MARK} as b; b.serve()",
                    str(listener.fileno()),
                ],
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(listener.fileno(),),
                start_new_session=True,  # not in the terminal's process group: Ctrl-C leaves it be
            )
    finally:
        listener.close()
    record = Record(pid=process.pid, url=f"http://127.0.0.1:{port}", home=str(home), started=time.time())
    write_record(home, record)
    return Starting(record, process, started_now=True)


def stop(home: Path | None = None, timeout: float = 15.0) -> Record | None:
    """Stop the background server of ``home`` (its record removed); the record stopped, or ``None``."""
    home = home or prefect_home()
    with _locked(home):
        record = read_record(home)
        if record is None:
            return None
        with contextlib.suppress(FileNotFoundError):
            record_path(home).unlink()  # the server notices and stops by itself as well
    if ours(record.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while ours(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if ours(record.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
    return record


def idle_limit() -> float:
    """Seconds without a request after which the server stops (``IMSFLOW_SERVER_IDLE_MINUTES``)."""
    try:
        minutes = float(os.environ.get(IDLE_SETTING) or IDLE_MINUTES)
    except ValueError:
        minutes = IDLE_MINUTES
    return max(minutes, 0.0) * 60


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class LastRequest:
    """ASGI middleware noting when the last request came (the idle clock)."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self.at = clock()

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            self.at = self.clock()
        await self.app(scope, receive, send)


def should_stop(home: Path, pid: int, last: LastRequest, limit: float) -> str | None:
    """Why the server should stop now, or ``None``: its record gone or taken over, or idle too long."""
    record = read_record(home)
    if record is None or record.pid != pid:
        return "its record was removed"
    if limit and last.clock() - last.at > limit:
        return f"no request for {limit / 60:.0f} minutes"
    return None


def serve() -> None:
    """The server process: Prefect's app with its UI on the inherited socket (``sys.argv[1]``, an fd)."""
    listener = socket.socket(fileno=int(sys.argv[1]))
    port = listener.getsockname()[1]
    home = prefect_home()
    os.environ.update(
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),  # the UI asks the API here
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL=os.environ.get("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"),
    )
    import uvicorn
    from prefect.server.api.server import create_app

    last = LastRequest(create_app(final=True))
    server = uvicorn.Server(uvicorn.Config(last, log_level="warning", lifespan="on", timeout_keep_alive=5))
    done = threading.Event()
    limit = idle_limit()

    def watch() -> None:
        while not done.wait(WATCH_SECONDS):
            why = should_stop(home, os.getpid(), last, limit)
            if why is not None:
                print(f"imsflow: stopping the background Prefect server: {why}", flush=True)
                server.should_exit = True
                return

    threading.Thread(target=watch, name="imsflow-server-watch", daemon=True).start()
    try:
        server.run(sockets=[listener])
    finally:
        done.set()
        remove_record(home, os.getpid())
