"""``imsflow coverage``: does every selected ECS have an active image younger than the maximum age?

Like every command that runs a flow, it imports Prefect and the flow inside ``flow_from_shell``. A gap is
not an error of the command: the table is printed, then the command exits :data:`GAP_EXIT_CODE`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from cli.app import (
    CredentialsOption,
    VerboseOption,
    app,
    console,
    err,
    fail,
    instance_id_option,
    parse_tags,
    step_printer,
)
from cli.flowrun import flow_from_shell
from imsflow.errors import CoverageGapError, InvalidRequestError
from imsflow.validation import check_age, parse_age

if TYPE_CHECKING:
    from flows.coverage import CoverageResult

#: The exit code of a check that found an ECS without a recent image (1 is an error, 2 a bad option).
GAP_EXIT_CODE = 3


#: Terminal columns from which the table also shows the ECS IDs (narrower: the names, IDs of unknown ECSs).
WIDE = 120


def coverage_table(result: CoverageResult, width: int) -> Table:
    gaps = len(result.gaps)
    from tasks.coverage import age_text  # Prefect is loaded by now (the flow ran)

    limit = age_text(parse_age(result.max_age))
    title = f"{len(result.rows)} ECSs, {gaps} without an active image younger than {limit}"
    wide = width >= WIDE
    columns = [
        Column("verdict", no_wrap=True),
        Column("reason"),  # the column that wraps on a narrow terminal
        Column("ECS", overflow="fold"),
        *([Column("ECS ID", no_wrap=True)] if wide else []),
        Column("newest image", overflow="fold"),
        Column("age", no_wrap=True),
    ]
    table = Table(*columns, title=title)
    for r in result.rows:
        colour = "green" if r.verdict == "covered" else "red"
        name = r.server_name if r.server_name != "?" or wide else r.instance_id
        table.add_row(
            f"[{colour}]{r.verdict}[/]",
            escape(r.reason),  # plain text: "[request id ...]" is not rich markup
            escape(name),
            *([r.instance_id] if wide else []),
            escape(r.image_name or "-"),
            r.age,
        )
    return table


def _steps() -> Callable[[str, str], None]:
    """One line per step; the fleet's selection step reports as ``fleet:selected``: shown as select-ecs."""
    show = step_printer()

    def report(step: str, message: str) -> None:
        show("select-ecs" if step.startswith("fleet:") else step, message)

    return report


def _max_age(value: str) -> str:
    try:
        return check_age(value, "--max-age")
    except InvalidRequestError as exc:
        fail(str(exc), code=2)


@app.command(
    epilog=f"Exit codes: 0 every ECS covered; {GAP_EXIT_CODE} an ECS has no active image younger than "
    "--max-age (or nothing matched the selection); 1 the check could not run; 2 a bad option."
)
def coverage(
    instance_id: Annotated[list[str] | None, instance_id_option("ECS ID to check (repeatable).")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Check ECSs with tag key=value (repeatable).")
    ] = None,
    name_contains: Annotated[str | None, typer.Option(help="Check ECSs whose name contains this.")] = None,
    max_age: Annotated[
        str,
        typer.Option(
            "--max-age",
            help="An ECS is covered by an active image younger than this (26h, 90m, 2d, 1w).",
            callback=_max_age,
        ),
    ] = "26h",
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Check that every selected ECS has an active image imsflow made, younger than --max-age.

    ECSs are selected as `imsflow fleet` selects them. Prints one row per ECS; exits 3 when any has none.
    """
    with flow_from_shell(verbose) as shell:
        from flows.coverage import CoverageParams, CoverageResult, check_image_coverage

        params = CoverageParams(
            instance_ids=instance_id or [],
            tags=parse_tags(tag or []),
            name_contains=name_contains,
            max_age=max_age,
        )
        if credentials_block is None:
            shell.settings().check_transport()
        try:
            result = shell.run(
                check_image_coverage, params, credentials_block, reporters=(_steps(),), what="coverage"
            )
        except CoverageGapError as exc:
            if not isinstance(exc.result, CoverageResult):
                raise
            result = exc.result
    if result.rows:
        console.print(coverage_table(result, console.width))
    if result.gaps or not result.rows:
        err.print(f"[bold red]gap:[/] {escape(result.summary)}")
        err.print(f"[dim]hint:[/] {escape(CoverageGapError.hint)}")
        raise typer.Exit(GAP_EXIT_CODE)
    console.print(result.summary)
