"""``imsflow fleet``: image many ECSs at once, with a live progress display and a summary table.

Like every command that runs a flow, it imports Prefect and the flow inside ``flow_from_shell``.
"""

from __future__ import annotations

import threading
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.app import (
    KIND_HELP,
    VerboseOption,
    app,
    check_kind_vault,
    check_kind_volumes,
    console,
    data_volume_option,
    err,
    fail,
    instance_id_option,
    parse_tags,
    vault_option,
)
from cli.flowrun import flow_from_shell
from imsflow.validation import ImageKind

if TYPE_CHECKING:
    from flows.fleet import FleetResult

#: Rows printed in full; a bigger fleet shows its failures and the counts (the artifact has every row).
FULL_TABLE_ROWS = 50


class FleetDisplay:
    """Turns the flow's ``fleet:*`` reports into a live progress bar (reports come from the flow's loop)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("selecting ECSs", total=None)
        self.running = self.done = self.failed = 0
        self.lock = threading.Lock()

    def __call__(self, step: str, message: str) -> None:
        if not step.startswith("fleet:"):
            return  # the per-step lines of the single-image display would flood the screen
        with self.lock:
            kind = step.removeprefix("fleet:")
            if kind == "selected":
                self.progress.update(self.task, total=int(message.split()[0]))  # "20 ECSs selected"
            elif kind == "running":
                self.running += 1
            elif kind == "done":
                self.running -= 1
                self.done += 1
            elif kind == "quota":
                self.progress.console.print(escape(message))
            elif kind == "waiting":
                # Other runs hold every job slot: say for whom we wait (the line names them).
                self.progress.console.print(f"[yellow]…[/] {escape(message)}")
            elif kind == "failed":
                # A failure before the job slot (a bad name) was never counted as running.
                self.running = max(0, self.running - 1)
                self.failed += 1
                self.progress.console.print(f"[red]✗[/] {message}")
            self.progress.update(
                self.task,
                completed=self.done + self.failed,
                description=f"{self.running} running, {self.done} done, {self.failed} failed",
            )


def summary(result: FleetResult) -> Table:
    rows = result.rows if len(result.rows) <= FULL_TABLE_ROWS else result.failed
    title = f"{len(result.rows)} ECSs, {len(result.failed)} failed, {result.wall_seconds:.0f} s"
    if rows is not result.rows:
        title += f" (failures only; the flow run's 'fleet-images' artifact lists all {len(result.rows)})"
    sets = any(r.data_image_ids or r.data_disks for r in rows)
    columns = ["ECS", "image name", "outcome", "image ID", *(["data images"] if sets else []), "job ID"]
    table = Table(*columns, "job s", "error", title=title)
    for r in rows:
        colour = {"failed": "red", "skipped": "yellow", "would submit": "cyan", "made already": "cyan"}.get(
            r.outcome, "green"
        )
        table.add_row(
            r.server_name,
            r.image_name,
            f"[{colour}]{r.outcome}[/]",
            r.image_id or "",
            *([str(len(r.data_image_ids) or r.data_disks)] if sets else []),
            r.job_id or "",
            f"{r.job_seconds:.0f}",
            escape(r.error or ""),  # plain text: "[request id ...]" is not rich markup
        )
    return table


@app.command()
def fleet(
    instance_id: Annotated[
        list[str] | None,
        instance_id_option("ECS ID to image (repeatable)."),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Select ECSs with tag key=value (repeatable).")
    ] = None,
    name_contains: Annotated[str | None, typer.Option(help="Select ECSs whose name contains this.")] = None,
    status: Annotated[str | None, typer.Option(help="Select ECSs in this status (SHUTOFF, ACTIVE).")] = None,
    name_template: Annotated[
        str, typer.Option(help="Image name: {server_name}, {server_id}, {date:%Y%m%d}.")
    ] = "{server_name}-{date:%Y%m%d}",
    kind: Annotated[
        ImageKind, typer.Option("--kind", help=KIND_HELP + " Each ECS gets the kind.")
    ] = "system",
    data_volume: Annotated[
        list[str] | None,
        data_volume_option(
            "With --kind system-and-data: image only this data disk (volume ID; repeatable): each ECS images "
            "those of them it has. Default: every data disk of every ECS."
        ),
    ] = None,
    vault_id: Annotated[
        str | None,
        vault_option(
            "With --kind full-ecs: the CBR vault (ID) the ECSs are backed up into; required where the cloud "
            "backs ECSs up with CBR (Open Telekom Cloud, the local cloud)."
        ),
    ] = None,
    max_concurrent: Annotated[int, typer.Option(help="Image jobs at once (IMS's cap).")] = 40,
    requests_per_second: Annotated[float, typer.Option(help="API request budget of the fleet.")] = 20.0,
    stop_if_running: Annotated[
        bool, typer.Option("--stop-if-running", help="Stop running ECSs first (and start them after).")
    ] = False,
    no_restart: Annotated[
        bool, typer.Option("--no-restart", help="Leave ECSs we stopped stopped after imaging.")
    ] = False,
    timeout: Annotated[int, typer.Option(help="Minutes to wait for one image job.")] = 60,
    slot_wait: Annotated[
        int,
        typer.Option(
            help="Minutes to wait for a free IMS job slot while other runs hold them all, then fail "
            "(`imsflow limits` shows the holders).",
        ),
    ] = 60,
    fit_quota: Annotated[
        bool,
        typer.Option(
            "--fit-quota",
            help="When the image quota has no room for every new image, image as many as fit and skip "
            "the rest (default: refuse the whole fleet).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Select, name and check the quota; stop, start and submit nothing."),
    ] = False,
    run_date: Annotated[
        str | None, typer.Option("--date", help="The {date} of the template (YYYY-MM-DD); today by default.")
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Image many ECSs, chosen by ID or by tag / name / status, as many at once as IMS allows."""
    check_kind_volumes(kind, data_volume or [])
    check_kind_vault(kind, vault_id)
    # Hundreds of task runs: let the Prefect server record their events in batches (a temporary server
    # inherits this), or its SQLite database falls behind and stalls every other write.
    batched = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100"}
    with flow_from_shell(verbose, prefect_env=batched) as shell:
        from flows.fleet import FleetParams, FleetResult, create_images_for_fleet

        values: dict[str, Any] = {
            "instance_ids": instance_id or [],
            "tags": parse_tags(tag or []),
            "name_contains": name_contains,
            "status": status.upper() if status else None,
            "name_template": name_template,
            "kind": kind,
            "data_volumes": data_volume or [],
            "max_concurrent": max_concurrent,
            "requests_per_second": requests_per_second,
            "stop_if_running": stop_if_running,
            "restart_after": not no_restart,
            "timeout_minutes": timeout,
            "slot_wait_minutes": slot_wait,
            "fit_quota": fit_quota,
            "dry_run": dry_run,
            "vault_id": vault_id,
        }
        if run_date:
            try:
                values["run_date"] = date.fromisoformat(run_date)
            except ValueError:
                fail(f"--date {run_date!r} is not YYYY-MM-DD", code=2)
        params = FleetParams(**values)
        settings = shell.settings()
        settings.check_transport()
        err.print(f"imaging a fleet on {settings.endpoint('ims')}, at most {max_concurrent} jobs at once")
        shell.server()  # before the progress bar: a server that does not start is one line, no empty bar
        columns = (
            TextColumn("[bold]fleet[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            # A run with failed ECSs ends failed but still returns its FleetResult: the table shows them.
            result = shell.run(
                create_images_for_fleet,
                params,
                reporters=(FleetDisplay(progress),),
                accept=FleetResult,
                what="fleet",
            )
    console.print(summary(result))
    if result.dry_run:
        console.print(f"dry run: nothing was stopped, started or submitted (image kind {result.kind})")
        if result.refusal:
            fail(f"a real run would refuse: {result.refusal}")
        return
    if result.failed:
        fail(f"{len(result.failed)} of {len(result.rows)} ECSs failed (see the table above)")
