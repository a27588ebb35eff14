"""The ``imsflow`` Typer app and what every command shares: the consoles, error display, step lines.

This module knows no command: the modules of ``cli.commands`` register theirs on :data:`app`, and
``cli.main`` imports them. Nothing here imports Prefect, the flows or the tasks, so ``imsflow --help`` and
``imsflow config`` stay fast; running a flow is :mod:`cli.flowrun`'s job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from imsflow.errors import ImsflowError, InvalidRequestError
from imsflow.validation import IMAGE_KINDS, check_block_name, check_uuid, parse_tag

if TYPE_CHECKING:
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
    # Prefect's own machinery (its events worker, say) logs ERROR lines of its own, through a handler of its
    # own, when the Prefect server restarts under a run: events lost, the run itself fine.
    "PREFECT_INTERNAL_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def quiet_prefect(verbose: bool) -> None:
    """Set before prefect is imported: its logging is configured at import time."""
    if verbose:
        return
    for name, value in QUIET_PREFECT.items():
        os.environ.setdefault(name, value)
    # A log handler that fails (Prefect's, sending logs to a server that has gone) writes "--- Error logging
    # to API ---" and the error to stderr unless this is off; the command says what went wrong in one line.
    logging.raiseExceptions = False


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
    """The reporter that prints one line per step of a single-image flow."""

    def show(step: str, message: str) -> None:
        console.print(f"  [green]✓[/] [bold]{step:<18}[/] {escape(message)}")

    return show


def checked(check: Callable[[str, str], object], option: str) -> Callable[[Any], Any]:
    """A Typer callback checking an option's value (each value of a repeatable one) with the same
    ``imsflow.validation`` check the flow forms use; a value that breaks the rule exits 2 stating the rule."""

    def callback(value: Any) -> Any:
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str):
                try:
                    check(item, option)
                except InvalidRequestError as exc:
                    fail(str(exc), code=2)
        return value

    return callback


#: ``--credentials-block``: every command that runs a flow takes one (checked like the forms check it).
CredentialsOption = Annotated[
    str | None,
    typer.Option(
        "--credentials-block",
        help="Name of an imsflow-credentials block to use instead of IMSFLOW_* (needs PREFECT_API_URL).",
        callback=checked(check_block_name, "--credentials-block"),
    ),
]
#: ``--verbose``/``-v``: Prefect's own log lines (the commands quiet them by default: ``quiet_prefect``).
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")]


def instance_id_option(help: str) -> Any:
    """The ``--instance-id``/``-i`` option (an ECS UUID, checked like the flow forms check it)."""
    return typer.Option("--instance-id", "-i", help=help, callback=checked(check_uuid, "--instance-id"))


#: ``--kind``'s help: every kind in its words (``imsflow.validation.IMAGE_KINDS``).
KIND_HELP = (
    "What to image: "
    + "; ".join(f"{kind}: {words}" for kind, words in IMAGE_KINDS.items())
    + ". Data-disk images are named IMAGE-NAME-DEVICE (e.g. web-1-20261127-vdb)."
)


def data_volume_option(help: str) -> Any:
    """The repeatable ``--data-volume`` option (a volume UUID, checked like the flow forms check it)."""
    return typer.Option("--data-volume", help=help, callback=checked(check_uuid, "--data-volume"))


def check_kind_volumes(kind: str, data_volumes: list[str]) -> None:
    """``--data-volume`` goes with ``--kind system-and-data`` only (exit 2 otherwise)."""
    if data_volumes and kind == "full-ecs":
        fail(
            "--data-volume does not go with --kind full-ecs: a full-ECS image holds every data disk of the "
            "ECS (choose disks with --kind system-and-data)",
            code=2,
        )
    if data_volumes and kind == "system":
        fail(
            "--data-volume needs --kind system-and-data (data disks are imaged only in an image set)", code=2
        )


def vault_option(help: str) -> Any:
    """The ``--vault-id`` option (a CBR vault UUID, checked like the flow forms check it)."""
    return typer.Option("--vault-id", help=help, callback=checked(check_uuid, "--vault-id"))


def check_kind_vault(kind: str, vault_id: str | None) -> None:
    """``--vault-id`` goes with ``--kind full-ecs`` only (exit 2 otherwise)."""
    if vault_id and kind != "full-ecs":
        fail("--vault-id needs --kind full-ecs (a CBR vault is named only for a full-ECS image)", code=2)


def parse_tags(tags: list[str]) -> list[str]:
    """``--tag key=value`` options (``imsflow.validation.parse_tag``), refused (exit 2) stating the rule."""
    for tag in tags:
        try:
            parse_tag(tag, "--tag")
        except InvalidRequestError as exc:
            fail(str(exc), code=2)
    return tags
