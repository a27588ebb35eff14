"""Prefect's temporary server for a command run without ``PREFECT_API_URL``, without Prefect's server code.

Prefect starts its own (``SubprocessASGIServer``) from ``prefect.server.api.server``, whose import loads the
whole server into the command's process (the FastAPI app, the database models, the services): 2.7 s of CPU
before the server process is even spawned, and it then loads them again. The process started here is the
same one (uvicorn serving Prefect's ``create_app`` as an ephemeral server: no UI, 127.0.0.1, the command's
environment and Prefect settings), but it is spawned at once, on a socket this process bound and listens on:
no port race, and a request made before the server is up waits in the socket's backlog. It stops when the
command exits (after Prefect's own exit handlers have sent their last logs and events to it).

Nothing here imports Prefect at module level: the server process imports only this module before uvicorn.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

#: What Prefect sets for its temporary server (``SubprocessASGIServer._run_uvicorn_command``).
EPHEMERAL_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
MARK = "cli.tempserver"


class NotStarted(Exception):
    """The temporary server exited (``code``) or did not answer within ``timeout`` seconds."""

    def __init__(self, timeout: float, code: int | None) -> None:
        super().__init__(f"exited with code {code}" if code is not None else f"no answer within {timeout} s")
        self.timeout = timeout
        self.code = code


class TemporaryServer:
    """A temporary Prefect server process of this command, on a socket bound here."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.api_url = f"http://127.0.0.1:{port}/api"

    @classmethod
    def start(cls, settings_env: Mapping[str, str] | None = None) -> TemporaryServer:
        """Spawn the server now; ``settings_env`` are this process's Prefect settings as variables (Prefect
        passes them too, so that settings made in-process reach the server). Stopped at exit."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            process = subprocess.Popen(  # noqa: S603 (this Python, our module, an fd number)
                [
                    sys.executable,
                    "-c",
                    f"import imsflow_app; imsflow_app.activate(); import {MARK} as t; t.serve()",
                    str(listener.fileno()),
                ],
                env={**os.environ, **EPHEMERAL_ENV, **(settings_env or {})},
                stdin=subprocess.DEVNULL,
                pass_fds=(listener.fileno(),),
            )
            server = cls(process, listener.getsockname()[1])
        finally:
            listener.close()
        # Registered before Prefect's event and log workers register theirs (at their first use, later):
        # exit handlers run last-in first-out, so those still reach the server before it stops.
        atexit.register(server.stop)
        return server

    def wait(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Return once the server answers; :class:`NotStarted` when it exits or does not answer in time."""
        from cli.background import api_healthy, await_health

        def answers(wait: float) -> bool:
            return api_healthy(self.api_url, timeout=wait)

        def running() -> bool:
            return self.process.poll() is None

        outcome = await_health(answers, running, timeout=timeout, clock=clock)
        if outcome == "exited":
            raise NotStarted(timeout, self.process.returncode)
        if outcome == "silent":
            raise NotStarted(timeout, None)

    def stop(self) -> None:
        """Stop the server, as Prefect stops its own (:func:`stop_process`)."""
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes], grace: float = 5) -> None:
    """Terminate ``process`` if it runs, and kill it when it has not exited after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve() -> None:
    """The server process: Prefect's app as its temporary server runs it, on the inherited socket (an fd)."""
    listener = socket.socket(fileno=int(sys.argv[1]))
    import uvicorn

    config = uvicorn.Config(
        "prefect.server.api.server:create_app", factory=True, log_level="error", lifespan="on"
    )
    uvicorn.Server(config).run(sockets=[listener])
