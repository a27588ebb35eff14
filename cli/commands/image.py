"""``imsflow create`` and ``imsflow demo``: one image from one ECS, on the configured cloud or a local one."""

from __future__ import annotations

import time
from typing import Annotated, Any, NoReturn

import typer

from cli.app import app, checked, console, err, instance_id_option, parse_tags
from cli.flowrun import flow_from_shell
from imsflow.validation import check_description, check_image_name

VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")]


@app.command()
def create(
    instance_id: Annotated[
        str,
        instance_id_option("ID of the ECS to image."),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name", "-n", help="Name of the new image.", callback=checked(check_image_name, "--name")
        ),
    ],
    description: Annotated[
        str, typer.Option(help="Image description.", callback=checked(check_description, "--description"))
    ] = "",
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
    verbose: VerboseOption = False,
) -> None:
    """Create a private image from an ECS against the configured cloud and print its ID.

    With --dry-run nothing is submitted; the exit code is 0 when a real run would go ahead, else 1.
    """
    with flow_from_shell(verbose) as shell:
        from flows.create_image import CreateImageParams, create_image_from_ecs

        settings = shell.settings()
        params = CreateImageParams(
            instance_id=instance_id,
            name=name,
            description=description,
            tags=parse_tags(tag or []),
            stop_if_running=stop_if_running,
            restart_after=not no_restart,
            timeout_minutes=timeout or settings.job_timeout_minutes,
            idempotency_key=idempotency_key,
            dry_run=dry_run,
        )
        settings.check_transport()
        doing = "dry run for" if dry_run else "creating"
        err.print(f"{doing} image [bold]{name}[/] from ECS {instance_id} on {settings.endpoint('ims')}")
        result = shell.run(create_image_from_ecs, params)
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


@app.command()
def demo(verbose: VerboseOption = False) -> None:
    """Run the whole flow against a local cloud started for the occasion. Needs no configuration."""
    started = time.monotonic()
    with flow_from_shell(verbose) as shell:
        # Prefect's temporary server takes seconds to start: let it start while the flows import and the
        # local cloud starts.
        shell.start_server_early()
        from flows.create_image import CreateImageParams, create_image_from_ecs
        from imsflow.settings import ImsflowSettings
        from localcloud import LocalCloud
        from localcloud.server import start_in_thread

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
            result = shell.run(create_image_from_ecs, params, settings_factory=lambda: settings)
        finally:
            server.stop()
    console.print(f"[bold green]image {result.image_id}[/] ({result.name}) is active")
    console.print(f"[dim]done in {time.monotonic() - started:.1f} s[/]")
