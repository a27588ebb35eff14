"""The ``imsflow`` command.

Prefect and the flows are imported inside the commands, not at the top: ``imsflow config`` and
``imsflow --help`` stay fast, and the client library stays free of Prefect.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imsflow.errors import ImsflowError, InvalidRequestError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State
    from pydantic import ValidationError

app = typer.Typer(
    name="imsflow",
    help="Turn ECS servers into IMS images on Huawei Cloud and Open Telekom Cloud, as Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

#: Prefect's console output for CLI runs. Our own step lines tell the story; Prefect's logs still reach its
#: API (and the UI). The server level hides the temporary server's shutdown tracebacks on a successful run.
QUIET_PREFECT = {
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_SERVER_LEVEL": "CRITICAL",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def quiet_prefect(verbose: bool) -> None:
    """Set before prefect is imported: its logging is configured at import time."""
    if verbose:
        return
    for name, value in QUIET_PREFECT.items():
        os.environ.setdefault(name, value)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    from imsflow.redact import redact

    # An error message can quote what the cloud or a library said; never let a secret through to the screen.
    # Escaped: "[request id ...]" and other bracketed text would otherwise be read as rich markup and vanish.
    err.print(f"[bold red]error:[/] {escape(redact(message))}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")
    raise typer.Exit(code)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """One clear line (and a hint) instead of a traceback, for every error we know."""
    from pydantic import ValidationError

    try:
        yield
    except ImsflowError as exc:
        fail(str(exc), getattr(exc, "hint", None))
    except ValidationError as exc:
        fail(describe_validation_error(exc), code=2)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem; where an IMS rule was broken, the rule itself rather than pydantic's wording."""
    problems = []
    for error in exc.errors(include_url=False):
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, InvalidRequestError):
            problems.append(str(cause))
        else:
            where = ".".join(str(p) for p in error["loc"]) or "value"
            problems.append(f"{where}: {error['msg']}")
    return "invalid input: " + "; ".join(problems)


def step_printer() -> Callable[[str, str], None]:
    def show(step: str, message: str) -> None:
        console.print(f"  [green]✓[/] [bold]{step:<18}[/] {escape(message)}")

    return show


def run_flow(flow_call: Any) -> State[Any]:
    """Run an async flow call made with ``return_state=True`` to its final state."""
    state: State[Any] = asyncio.run(flow_call)
    return state


def result_or_raise(state: State[Any]) -> Any:
    """The flow's result, or the exception that failed it (re-raised for ``friendly_errors``)."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not state.is_completed():
        fail(f"the flow run ended {state.type.value.lower()}: {state.message}")
    return result


def _parse_tags(tags: list[str]) -> list[str]:
    for tag in tags:
        if "=" not in tag:
            fail(f"tag {tag!r} is not key=value", code=2)
    return tags


@app.command()
def create(
    instance_id: Annotated[str, typer.Option("--instance-id", "-i", help="ID of the ECS to image.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Name of the new image.")],
    description: Annotated[str, typer.Option(help="Image description.")] = "",
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Image tag key=value (repeatable).")
    ] = None,
    stop_if_running: Annotated[
        bool, typer.Option("--stop-if-running", help="Stop a running ECS first (and start it again after).")
    ] = False,
    no_restart: Annotated[
        bool, typer.Option("--no-restart", help="Leave an ECS we stopped stopped after imaging.")
    ] = False,
    timeout: Annotated[
        int | None, typer.Option(help="Minutes to wait for the image job [default: IMSFLOW_JOB_TIMEOUT].")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Make the request unique by this key instead of instance ID + name.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Check credentials, ECS, quota and name; say what would happen; submit nothing."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")] = False,
) -> None:
    """Create a private image from an ECS against the configured cloud and print its ID.

    With --dry-run nothing is submitted; the exit code is 0 when a real run would go ahead, else 1.
    """
    quiet_prefect(verbose)
    with friendly_errors():
        from flows.create_image import CreateImageParams, create_image_from_ecs
        from tasks import runtime

        settings = runtime.settings()
        params = CreateImageParams(
            instance_id=instance_id,
            name=name,
            description=description,
            tags=_parse_tags(tag or []),
            stop_if_running=stop_if_running,
            restart_after=not no_restart,
            timeout_minutes=timeout or settings.job_timeout_minutes,
            idempotency_key=idempotency_key,
            dry_run=dry_run,
        )
        settings.check_transport()
        doing = "dry run for" if dry_run else "creating"
        err.print(f"{doing} image [bold]{name}[/] from ECS {instance_id} on {settings.endpoint('ims')}")
        with runtime.use_runtime(reporters=(step_printer(),)):
            state = run_flow(create_image_from_ecs(params, return_state=True))
        result = result_or_raise(state)
    if dry_run:
        _print_dry_run(result)
        return
    console.print(result.image_id)


def _print_dry_run(result: Any) -> NoReturn:
    console.print(f"dry run: a real run would [bold]{result.would}[/]; nothing was submitted")
    console.print(f"  ECS          {result.ecs or result.instance_id}")
    if result.quota_total is not None:
        console.print(f"  image quota  {result.quota_used} of {result.quota_total} used")
    if result.existing_image_id:
        console.print(f"  image        {result.existing_image_id} (made by this request)")
    for problem in result.problems:
        console.print(f"  [red]problem[/]      {problem}")
    for note in result.notes:
        console.print(f"  note         {note}")
    raise typer.Exit(1 if result.would == "refuse" else 0)


def _start_prefect_server_early() -> Callable[[], None]:
    """Start Prefect's temporary server while the flows import and the local cloud starts.

    Without a configured API the first Prefect call starts that server and waits seconds for it; starting it
    in a thread now overlaps the wait with our own start-up. The returned function waits for it (and
    re-raises a failure) before the first flow run.
    """
    import threading

    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return lambda: None
    failure: list[BaseException] = []

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)

    thread = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failure:
            raise failure[0]

    return wait


@app.command()
def demo(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")] = False,
) -> None:
    """Run the whole flow against a local cloud started for the occasion. Needs no configuration."""
    quiet_prefect(verbose)
    import time

    started = time.monotonic()
    server_ready = _start_prefect_server_early()
    with friendly_errors():
        from flows.create_image import CreateImageParams, create_image_from_ecs
        from imsflow.settings import ImsflowSettings
        from localcloud import LocalCloud
        from localcloud.server import start_in_thread
        from tasks import runtime

        cloud = LocalCloud()
        server = start_in_thread(cloud, host="127.0.0.1", port=0)
        try:
            settings = ImsflowSettings(
                _env_file=None,
                profile="local",
                iam_url=server.url,
                ecs_url=server.url,
                ims_url=server.url,
                domain="demo",
                username="demo",
                password="demo-password",
                project_id=None,
                poll_initial_delay=1.0,
            )
            instance = "6f1c2d7e-0000-4000-8000-000000000001"
            name = f"web-1-demo-{time.strftime('%Y%m%d-%H%M%S')}"
            console.print(
                f"[bold]imsflow demo[/]: local cloud at {server.url}; imaging ECS web-1 ({instance})"
            )
            params = CreateImageParams(instance_id=instance, name=name, description="made by imsflow demo")
            server_ready()
            with runtime.use_runtime(settings_factory=lambda: settings, reporters=(step_printer(),)):
                state = run_flow(create_image_from_ecs(params, return_state=True))
            result = result_or_raise(state)
        finally:
            server.stop()
    console.print(f"[bold green]image {result.image_id}[/] ({result.name}) is active")
    console.print(f"[dim]done in {time.monotonic() - started:.1f} s[/]")


@app.command()
def cloud(
    host: Annotated[str, typer.Option(help="Address to bind; keep it loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8780,
    seed: Annotated[
        Path | None, typer.Option(help="Seed file (YAML or JSON); the demo seed without it.", exists=True)
    ] = None,
) -> None:
    """Serve the local cloud (IAM, ECS and IMS emulator) until interrupted."""
    from localcloud.server import main as serve_main

    serve_main(host=host, port=port, seed_path=seed)


@app.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    with friendly_errors():
        from imsflow.settings import ImsflowSettings

        settings = ImsflowSettings()
        table = Table("setting", "value", title="imsflow settings (IMSFLOW_*, .env)")
        for key, value in settings.masked().items():
            table.add_row(key, value)
        console.print(table)


# Importing these registers their commands on ``app``.
from imsflow.commands import __name__ as _commands  # noqa: E402,F401
from imsflow.commands import doctor as _doctor  # noqa: E402,F401
from imsflow.commands import fleet as _fleet  # noqa: E402,F401
from imsflow.commands import ops as _ops  # noqa: E402,F401


def main() -> None:
    from imsflow.redact import install_redaction

    # Masks passwords, SKs and tokens in every log line the command or Prefect writes (flows install it too).
    install_redaction()
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
