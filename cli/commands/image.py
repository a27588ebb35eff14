"""``imsflow create`` and ``imsflow demo``: one image from one ECS, on the configured cloud or a local one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cli.app import (
    KIND_HELP,
    VerboseOption,
    app,
    check_kind_vault,
    check_kind_volumes,
    checked,
    console,
    data_volume_option,
    err,
    fail,
    instance_id_option,
    parse_tags,
    vault_option,
)
from cli.flowrun import flow_from_shell
from imsflow.validation import ImageKind, check_description, check_image_name, check_project_id

if TYPE_CHECKING:
    from cli.background import Starting


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
    kind: Annotated[ImageKind, typer.Option("--kind", help=KIND_HELP)] = "system",
    data_volume: Annotated[
        list[str] | None,
        data_volume_option(
            "With --kind system-and-data: image only this data disk (volume ID; repeatable). "
            "Default: every data disk of the ECS."
        ),
    ] = None,
    vault_id: Annotated[
        str | None,
        vault_option(
            "With --kind full-ecs: the CBR vault (ID) the ECS is backed up into; required where the cloud "
            "backs ECSs up with CBR (Open Telekom Cloud, the local cloud)."
        ),
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
    share_with: Annotated[
        list[str] | None,
        typer.Option(
            "--share-with",
            help="Share the image (and its data images) with this project ID once active (repeatable); "
            "the project then runs `imsflow accept`.",
            callback=checked(check_project_id, "--share-with"),
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Create a private image from an ECS against the configured cloud and print its ID.

    With --kind system-and-data a second request then makes an image of each data disk; the IDs are printed
    one a line, the system image's first. With --kind full-ecs one image holds the system disk and every data
    disk (into the CBR vault --vault-id; the ECS may keep running, and such an image cannot be exported).
    With --dry-run nothing is submitted; the exit code is 0 when a real run would go ahead, else 1.
    """
    check_kind_volumes(kind, data_volume or [])
    check_kind_vault(kind, vault_id)
    with flow_from_shell(verbose) as shell:
        from flows.create_image import CreateImageParams, create_image_from_ecs

        settings = shell.settings()
        params = CreateImageParams(
            instance_id=instance_id,
            name=name,
            description=description,
            tags=parse_tags(tag or []),
            kind=kind,
            data_volumes=data_volume or [],
            stop_if_running=stop_if_running,
            restart_after=not no_restart,
            timeout_minutes=timeout or settings.job_timeout_minutes,
            idempotency_key=idempotency_key,
            dry_run=dry_run,
            share_with=share_with or [],
            vault_id=vault_id,
        )
        settings.check_transport()
        doing = "dry run for" if dry_run else "creating"
        err.print(f"{doing} image [bold]{name}[/] from ECS {instance_id} on {settings.endpoint('ims')}")
        result = shell.run(create_image_from_ecs, params)
    if dry_run:
        _print_dry_run(result)
        return
    # One ID a line (the system image's first), for scripts; then which data disk each data image is of.
    for image_id in result.image_ids:
        console.print(image_id)
    for data in result.data_images:
        err.print(f"[dim]data image {data.image_id}: {data.name}, of volume {data.volume_id or '?'}[/]")
    if result.shared_with:
        err.print(f"[dim]shared with {', '.join(result.shared_with)} (each project: imsflow accept)[/]")


def _print_dry_run(result: Any) -> NoReturn:
    console.print(f"dry run: a real run would [bold]{result.would}[/]; nothing was submitted")
    console.print(f"  ECS          {result.ecs or result.instance_id}")
    console.print(f"  image kind   {result.kind}")
    if result.quota_total is not None:
        console.print(f"  image quota  {result.quota_used} of {result.quota_total} used")
    if result.existing_image_id:
        console.print(f"  image        {result.existing_image_id} (made by this request)")
    for problem in result.problems:
        console.print(f"  [red]problem[/]      {problem}")
    for note in result.notes:
        console.print(f"  note         {note}")
    raise typer.Exit(1 if result.would == "refuse" else 0)


#: The demo's image job: 0.5 s queued, 1.5 s saving (the local cloud's default: 1 s + 5 s); polled from 0.5 s.
DEMO_TIMING = {"job_init_seconds": 0.5, "image_job_seconds": 1.5}
DEMO_POLL_INITIAL_DELAY = 0.5
DEMO_INSTANCE = "6f1c2d7e-0000-4000-8000-000000000001"


@app.command()
def demo(
    verbose: VerboseOption = False,
    temporary_server: Annotated[
        bool,
        typer.Option(
            "--temporary-server",
            help="Run on Prefect's temporary server, stopped at the end (slower; nothing left running).",
        ),
    ] = False,
) -> None:
    """Run the whole flow against a local cloud started for the occasion. Needs no configuration.

    The flow runs on the Prefect server imsflow keeps in the background (started on the first run, with its
    UI; `imsflow ui --stop` stops it), or on PREFECT_API_URL's when set; the last line links to the run.
    """
    started = time.monotonic()
    with flow_from_shell(verbose) as shell:
        starting = None if temporary_server else _background_server()
        if starting is None:
            # Prefect's temporary server takes seconds to start: let it start while the flows import and the
            # local cloud starts (a no-op when PREFECT_API_URL is set).
            shell.start_server_early()
        from flows.create_image import CreateImageParams, create_image_from_ecs
        from imsflow.settings import ImsflowSettings
        from localcloud import LocalCloud
        from localcloud.seed import demo_seed
        from localcloud.server import start_in_thread

        seed = demo_seed()
        seed = seed.model_copy(update={"timing": seed.timing.model_copy(update=DEMO_TIMING)})
        server = start_in_thread(LocalCloud(seed), host="127.0.0.1", port=0)
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
                poll_initial_delay=DEMO_POLL_INITIAL_DELAY,
            )
            name = f"web-1-demo-{time.strftime('%Y%m%d-%H%M%S')}"
            console.print(
                f"[bold]imsflow demo[/]: local cloud at {server.url}; imaging ECS web-1 ({DEMO_INSTANCE})"
            )
            params = CreateImageParams(
                instance_id=DEMO_INSTANCE, name=name, description="made by imsflow demo"
            )
            with _on_server(starting):
                result = shell.run(create_image_from_ecs, params, settings_factory=lambda: settings)
                link = _run_link(shell.flow_run_id) if not temporary_server else None
        finally:
            server.stop()
    console.print(f"[bold green]image {result.image_id}[/] ({result.name}) is active")
    if link:
        console.print(f"see the run in the Prefect UI: {link}")
    console.print(f"[dim]done in {time.monotonic() - started:.1f} s[/]")


def _background_server() -> Starting | None:
    """The background Prefect server (found, or starting), unless the user set PREFECT_API_URL."""
    from cli import background

    if background.configured_api_url() is not None:
        return None
    return background.find_or_start()


@contextmanager
def _on_server(starting: Starting | None) -> Iterator[None]:
    """Flow runs inside go to the background server once it answers (one line if it does not)."""
    if starting is None:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cli import background

    try:
        record = starting.wait()
    except background.ServerError as exc:
        fail(str(exc), hint=exc.hint)
    if starting.started_now:
        console.print(
            f"[dim]Prefect server started in the background at {record.url} "
            "(kept for the next run; `imsflow ui --stop` stops it)[/]"
        )
    with temporary_settings(updates={PREFECT_API_URL: record.api_url}):
        yield


def _run_link(flow_run_id: str | None) -> str | None:
    """The UI page of the flow run (the configured or background server's UI), if there is one."""
    if flow_run_id is None:
        return None
    from prefect.utilities.urls import url_for

    return url_for("flow-run", obj_id=flow_run_id)


@app.command()
def ui(
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop the background Prefect server (nothing if none runs).")
    ] = False,
) -> None:
    """Print the Prefect UI's address: the background server's, started if none runs (as `imsflow demo` does).

    With --stop, stop that server instead. PREFECT_API_URL, when set, names the server to use instead.
    """
    from cli import background

    if stop:
        stopped = background.stop()
        if stopped is None:
            console.print("no background Prefect server is running")
        else:
            console.print(f"stopped the background Prefect server at {stopped.url} (pid {stopped.pid})")
        return
    if (configured := background.configured_api_url()) is not None:
        console.print(f"PREFECT_API_URL is set: the UI of {configured.removesuffix('/api')}")
        return
    starting = background.find_or_start()
    try:
        record = starting.wait()
    except background.ServerError as exc:
        fail(str(exc), hint=exc.hint)
    how = "started" if starting.started_now else "running"
    console.print(f"Prefect UI at {record.url} ({how} in the background, pid {record.pid})")
