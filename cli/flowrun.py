"""Running a flow from the shell: the one opening every flow command shares.

::

    with flow_from_shell(verbose) as shell:      # quiet Prefect, friendly errors
        from flows.lifecycle import DeleteImageParams, delete_image   # Prefect is imported after the quieting
        params = DeleteImageParams(...)
        result = shell.run(delete_image, params, credentials_block)   # step lines, the flow, its result

Without ``PREFECT_API_URL`` the run needs a temporary Prefect server. It is started here (``cli.tempserver``:
the process Prefect would start, without loading Prefect's server code into this one), and waited for with
:data:`STARTUP_TIMEOUT_SECONDS` unless the user set ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``:
Prefect's default wait (20 s) is too short on a busy machine. When it still does not come up, the command
says so in one line, with what to do, instead of a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from cli.app import fail, friendly_errors, quiet_prefect, step_printer

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

    from cli.tempserver import TemporaryServer
    from imsflow.settings import ImsflowSettings
    from runtime import Reporter

#: Seconds to wait for Prefect's temporary server: it starts in 5-12 s on 2 idle cores, several times that on
#: busy ones. ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (environment, profile, .env) wins.
STARTUP_TIMEOUT_SECONDS = 90
TIMEOUT_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
#: What Prefect's ``SubprocessASGIServer.start`` raises (a ``RuntimeError``) when the server did not come up.
PREFECT_START_FAILURE = "Timed out while attempting to connect to ephemeral Prefect API server"
#: What Prefect's client raises (a ``RuntimeError``) when the server of ``PREFECT_API_URL`` does not answer.
PREFECT_UNREACHABLE = "Failed to reach API at"


def startup_timeout() -> int:
    """The seconds to wait for Prefect's temporary server: the user's setting, else ours."""
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return ephemeral.startup_timeout_seconds
    return STARTUP_TIMEOUT_SECONDS


def server_did_not_start(timeout: float, code: int | None = None) -> NoReturn:
    """The one line for a temporary server that did not come up: it exited (``code``) or kept silent."""
    if code is not None:
        fail(
            f"Prefect's temporary server exited with code {code} before it started: run "
            "`prefect server start` to see why, then set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    fail(
        f"Prefect's temporary server did not start within {timeout:.0f} s (is the machine busy?): start one "
        "with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
        f"or raise {TIMEOUT_SETTING}"
    )


def _prefect_did_not_start(timeout: float, exc: BaseException) -> NoReturn:
    """The same line for a temporary server Prefect's client started itself (its ``RuntimeError``)."""
    exited = " Ephemeral server process exited with code "
    if exited in str(exc):
        server_did_not_start(timeout, int(str(exc).split(exited, 1)[1].split(".", 1)[0]))
    server_did_not_start(timeout)


def start_prefect_server(stack: contextlib.ExitStack) -> TemporaryServer | None:
    """Start a temporary Prefect server (when no ``PREFECT_API_URL`` is set) for the rest of the command.

    The server is spawned at once (``cli.tempserver``) and ``PREFECT_API_URL`` names it from now on (in
    ``stack``). Returns it (``None`` when a server is named or temporary ones are off); call
    :func:`wait_for_server` before the first flow run.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        get_current_settings,
        temporary_settings,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from cli.tempserver import TemporaryServer

    server = TemporaryServer.start(get_current_settings().to_environment_variables(exclude_unset=True))
    stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
    return server


def wait_for_server(server: TemporaryServer) -> None:
    """Return once ``server`` answers (within :func:`startup_timeout`), or say in one line why it did not."""
    from cli.tempserver import NotStarted

    try:
        server.wait(startup_timeout())
    except NotStarted as exc:
        server_did_not_start(exc.timeout, exc.code)


def server_is_local() -> bool:
    """Whether the flow runs on a Prefect server of this machine: the temporary one (no ``PREFECT_API_URL``),
    the demo's background server, or any on a loopback address. Its 503s are retried in tenths of a second
    (``runtime.retry``, point 5)."""
    from prefect.settings import PREFECT_API_URL

    from imsflow.settings import is_loopback

    url = PREFECT_API_URL.value()
    return not url or is_loopback(urlsplit(url).hostname or "")


class ShellFlow:
    """What :func:`flow_from_shell` hands to a command: the settings, the server, running the flow."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._started = False
        #: The temporary server this command started, if it started one.
        self._temporary: TemporaryServer | None = None
        #: The ID of the last flow run :meth:`run` ran (for a link to it in the UI).
        self.flow_run_id: str | None = None

    @property
    def temporary_api(self) -> str | None:
        """The API URL of the temporary server this command started, if it started one."""
        return self._temporary.api_url if self._temporary is not None else None

    def settings(self) -> ImsflowSettings:
        """The settings the flow's tasks will use (``IMSFLOW_*`` and ``.env``)."""
        import runtime

        return runtime.settings()

    def start_server_early(self) -> None:
        """Start Prefect's temporary server now, and wait for it later (``imsflow demo``)."""
        if not self._started:
            self._started = True
            self._temporary = start_prefect_server(self._stack)

    def server(self) -> None:
        """Wait for Prefect's server (starting the temporary one if need be); one line if it does not come."""
        self.start_server_early()
        if self._temporary is not None:
            wait_for_server(self._temporary)

    def run(
        self,
        flow: Callable[..., Any],
        *args: Any,
        reporters: tuple[Reporter, ...] | None = None,
        settings_factory: Callable[[], ImsflowSettings] | None = None,
        accept: type | None = None,
        what: str = "flow",
    ) -> Any:
        """Run the async ``flow(*args)`` to its end and return its result.

        ``reporters`` receive the steps (default: one printed line per step); ``settings_factory`` replaces
        ``IMSFLOW_*``. The flow's own error is re-raised for the friendly error line; a run that ended
        otherwise than completed fails the command, unless its result is an ``accept`` instance (a fleet
        run fails with its table).
        """
        import runtime
        from runtime.retry import local_server_backoff

        self.server()
        changes: dict[str, object] = {"reporters": reporters if reporters is not None else (step_printer(),)}
        if settings_factory is not None:
            changes["settings_factory"] = settings_factory
        backoff = local_server_backoff() if server_is_local() else contextlib.nullcontext()
        with runtime.use_runtime(**changes), backoff:
            state: State[Any] = asyncio.run(flow(*args, return_state=True))
        run_id = state.state_details.flow_run_id
        self.flow_run_id = str(run_id) if run_id is not None else None
        return unwrap(state, accept=accept, what=what)


def unwrap(state: State[Any], *, accept: type | None = None, what: str = "flow") -> Any:
    """The flow's result, or the exception that failed it (re-raised for ``friendly_errors``)."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    ended_well = isinstance(result, accept) if accept is not None else state.is_completed()
    if not ended_well:
        fail(f"the {what} run ended {state.type.value.lower()}: {state.message}")
    return result


@contextmanager
def flow_from_shell(
    verbose: bool = False, *, prefect_env: Mapping[str, str] | None = None
) -> Iterator[ShellFlow]:
    """The opening of every command that runs a flow.

    Quiets Prefect's console (unless ``verbose``) and sets ``prefect_env`` defaults, both before Prefect is
    imported; turns every error we know into one line (and a hint) with no traceback, Prefect's temporary
    server that does not start included. Import the flow inside the ``with`` block.
    """
    quiet_prefect(verbose)
    for name, value in (prefect_env or {}).items():
        os.environ.setdefault(name, value)
    with friendly_errors(), contextlib.ExitStack() as stack:
        shell = ShellFlow(stack)
        try:
            yield shell
        except Exception as exc:
            url = _unreachable_prefect_api(exc)
            if url is not None:
                ours = shell.temporary_api
                _prefect_unreachable(url, temporary=ours is not None and url.rstrip("/") == ours.rstrip("/"))
            # A server Prefect started on its own (not through ShellFlow.server) with its own timeout.
            if not isinstance(exc, RuntimeError) or PREFECT_START_FAILURE not in str(exc):
                raise
            from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

            _prefect_did_not_start(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), exc)


def _unreachable_prefect_api(exc: Exception) -> str | None:
    """The Prefect API URL that ``exc`` says did not answer, if it says so.

    Prefect's client raises a ``RuntimeError`` when the server does not answer its first call, but a call
    in the middle of a run that cannot connect (the server was stopped or killed) escapes as httpx's own
    ``TransportError``. The cloud's calls never do (``imsflow.client`` maps them to named errors), so one
    whose request went to the Prefect API is the server gone."""
    if isinstance(exc, RuntimeError) and PREFECT_UNREACHABLE in str(exc):
        return str(exc).split(PREFECT_UNREACHABLE, 1)[1].strip()
    import httpx

    if not isinstance(exc, httpx.TransportError):
        return None
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    try:
        url = str(exc.request.url)
    except RuntimeError:  # an error raised with no request
        return None
    return api if api and url.startswith(api.rstrip("/")) else None


def _prefect_unreachable(url: str, *, temporary: bool) -> NoReturn:
    if temporary:  # the user named no server: the one this command started went away during the run
        fail(
            f"Prefect's temporary server at {url} stopped answering during the run "
            "(was it killed, or the machine short of memory?)",
            hint="run the command again; for long runs, start a server that outlives the command "
            "(`prefect server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    fail(  # PREFECT_API_URL names a server that does not answer
        f"no Prefect server answers at {url}",
        hint="start it (`prefect server start`), or unset PREFECT_API_URL for a temporary one",
    )
