"""Operating imsflow: delete, export, prune; serve the deployments; register blocks; failure notifications.

Like every command that runs a flow, they import Prefect and the flows inside ``flow_from_shell``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import typer

from cli.app import (
    CredentialsOption,
    VerboseOption,
    app,
    checked,
    console,
    err,
    fail,
    instance_id_option,
    quiet_prefect,
)
from cli.flowrun import ShellFlow, flow_from_shell
from imsflow.errors import InvalidRequestError
from imsflow.validation import check_bucket_url, check_uuid, parse_age


def parse_age_days(text: str) -> float:
    """``30d``, ``12h``, ``2w``, ``90m`` or a plain number of days, as days (``validation.parse_age``)."""
    try:
        return parse_age(text, "--max-age").total_seconds() / 86400
    except InvalidRequestError:
        fail(f"--max-age {text!r} is not an age such as 30d, 12h or 2w", code=2)


def _check_settings(shell: ShellFlow, credentials_block: str | None) -> None:
    """Refuse unsafe ``IMSFLOW_*`` endpoints before the run (a credentials block is checked by the flow)."""
    if credentials_block is None:
        shell.settings().check_transport()


@app.command()
def delete(
    image_id: Annotated[
        str,
        typer.Argument(help="ID of the private image to delete.", callback=checked(check_uuid, "IMAGE_ID")),
    ],
    timeout: Annotated[int, typer.Option(help="Minutes to wait until the image is gone.")] = 10,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Delete a private image and wait until it is gone (an image already gone is fine)."""
    with flow_from_shell(verbose) as shell:
        from flows.lifecycle import DeleteImageParams, delete_image

        params = DeleteImageParams(image_id=image_id, timeout_minutes=timeout)
        _check_settings(shell, credentials_block)
        result = shell.run(delete_image, params, credentials_block)
    console.print(f"{result.image_id} {result.outcome}")


@app.command()
def export(
    image_id: Annotated[
        str,
        typer.Argument(help="ID of the private image to export.", callback=checked(check_uuid, "IMAGE_ID")),
    ],
    bucket_url: Annotated[
        str,
        typer.Option(
            "--bucket-url",
            help="OBS target as BUCKET:FILE.",
            callback=checked(check_bucket_url, "--bucket-url"),
        ),
    ],
    file_format: Annotated[
        Literal["qcow2", "vhd", "zvhd", "vmdk"] | None,
        typer.Option("--format", help="File format: qcow2, vhd, zvhd or vmdk."),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Quick export (ZVHD2, no conversion).")] = False,
    timeout: Annotated[int, typer.Option(help="Minutes to wait for the export job.")] = 120,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Export a private image to OBS and wait for the export job."""
    if quick and file_format is not None:
        fail("--quick and --format exclude each other (a quick export is always ZVHD2)", code=2)
    if not quick and file_format is None:
        fail("give --format qcow2|vhd|zvhd|vmdk, or --quick", code=2)
    with flow_from_shell(verbose) as shell:
        from flows.lifecycle import ExportImageParams, export_image

        params = ExportImageParams(
            image_id=image_id,
            bucket_url=bucket_url,
            file_format=file_format or "qcow2",
            quick=quick,
            timeout_minutes=timeout,
        )
        params.to_request()
        _check_settings(shell, credentials_block)
        result = shell.run(export_image, params, credentials_block)
    console.print(
        f"{result.image_id} exported to {result.bucket_url} ({result.file_format}), job {result.job_id}"
    )


@app.command()
def prune(
    instance_id: Annotated[
        list[str] | None,
        instance_id_option("Only images of this ECS (repeatable)."),
    ] = None,
    keep: Annotated[int | None, typer.Option(help="Keep this many newest images per ECS.")] = None,
    max_age: Annotated[
        str | None, typer.Option("--max-age", help="Keep images younger than this (30d, 12h, 2w).")
    ] = None,
    prune_gone_servers: Annotated[
        bool,
        typer.Option(
            "--prune-gone-servers",
            help="Let the rules delete the last image of an ECS that no longer exists too (kept by default).",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Delete old images imsflow made, per ECS; never images it did not make, in use, or being created.

    The last image of an ECS that no longer exists is kept, unless --prune-gone-servers.
    """
    if keep is None and max_age is None:
        fail("give --keep N, --max-age AGE or both", code=2)
    max_age_days = parse_age_days(max_age) if max_age is not None else None
    with flow_from_shell(verbose) as shell:
        from flows.lifecycle import PruneParams, prune_images

        params = PruneParams(
            instance_ids=instance_id or [],
            keep=keep,
            max_age_days=max_age_days,
            prune_gone_servers=prune_gone_servers,
            dry_run=dry_run,
        )
        _check_settings(shell, credentials_block)
        result = shell.run(prune_images, params, credentials_block)
    verb = "would delete" if result.dry_run else "deleted"
    current = None
    # Plain lines, one per image and grouped by ECS: readable in 80 columns and easy to grep.
    for decision in sorted(result.kept + result.deleted, key=lambda d: (d.instance_id, d.action, d.name)):
        if decision.instance_id != current:
            current = decision.instance_id
            console.print(f"ECS {current}")
        created = decision.created_at.strftime("%Y-%m-%d %H:%M") if decision.created_at else "-"
        action = "keep" if decision.action == "keep" else verb
        if decision.image_id in result.failed:
            action = "failed"
        line = f"  {action:<12}  {decision.image_id}  {decision.name}  {created}  {decision.reason}"
        console.print(line, soft_wrap=True)
    console.print(result.summary + (" (dry run)" if result.dry_run else ""))


#: Seconds a command that needs the Prefect server waits for it to answer: `prefect server start &` followed
#: at once by `imsflow serve` (as in README) finds it still starting for 5-15 s on 2 cores.
SERVER_WAIT_SECONDS = 90


def _require_api_url() -> str:
    """``PREFECT_API_URL``, once the server there answers (waiting for one still starting, saying so)."""
    import time

    from prefect.settings import PREFECT_API_URL

    from cli.background import api_healthy

    url = PREFECT_API_URL.value()
    if not url:
        fail(
            "no Prefect server: PREFECT_API_URL is not set",
            hint="start one with `prefect server start`, then export PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    deadline = time.monotonic() + SERVER_WAIT_SECONDS
    said = False
    while True:
        if api_healthy(str(url), timeout=5):
            return str(url)
        if time.monotonic() > deadline:
            fail(
                f"no Prefect server answers at {url} (waited {SERVER_WAIT_SECONDS} s)",
                hint="start one with `prefect server start`, or fix PREFECT_API_URL",
            )
        if not said:
            err.print(f"waiting for the Prefect server at {url} ...")
            said = True
        time.sleep(0.5)


@app.command()
def serve(
    limit: Annotated[int | None, typer.Option(help="At most this many flow runs at once.")] = None,
    deployment: Annotated[
        list[str] | None, typer.Option("--deployment", "-d", help="Serve only this deployment (repeatable).")
    ] = None,
) -> None:
    """Serve the deployments of deployments/prefect.yaml, schedules included, until interrupted."""
    api_url = _require_api_url()
    from deployments.serve import build_deployments

    deployments, skipped = build_deployments(only=set(deployment) if deployment else None)
    for skip in skipped:
        err.print(f"[yellow]not serving {skip.name}:[/] {skip.reason}")
    if not deployments:
        fail("no deployment to serve")
    err.print(f"serving {', '.join(d.name for d in deployments)} on {api_url}")
    from prefect import serve as prefect_serve

    prefect_serve(*deployments, limit=limit)


blocks = typer.Typer(help="Prefect blocks imsflow provides.", no_args_is_help=True)
app.add_typer(blocks, name="blocks")


@blocks.command("register")
def blocks_register() -> None:
    """Register the imsflow-credentials block type with the Prefect server (idempotent)."""
    quiet_prefect(False)
    api_url = _require_api_url()
    from runtime.credentials import register_blocks

    slugs = asyncio.run(register_blocks())
    console.print(f"registered {', '.join(slugs)} on {api_url}")


@app.command()
def notify(
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            envvar="IMSFLOW_FAILURE_WEBHOOK_URL",
            help="URL to POST to when an image could not be made (or set IMSFLOW_FAILURE_WEBHOOK_URL).",
        ),
    ] = None,
) -> None:
    """Create the automation that calls a webhook on every imsflow.image.failed event."""
    api_url = _require_api_url()
    if not webhook_url:
        fail("give --webhook-url (or IMSFLOW_FAILURE_WEBHOOK_URL)", code=2)
    from deployments.notifications import AUTOMATION, ensure_failure_webhook

    automation_id = asyncio.run(ensure_failure_webhook(webhook_url))
    # The URL is not printed: chat webhooks carry their token in it.
    console.print(
        f"automation {AUTOMATION!r} ({automation_id}) on {api_url} posts failures to the webhook block"
    )
