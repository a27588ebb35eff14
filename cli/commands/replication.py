"""Replication within a region: ``imsflow replicate`` (a copy of an image, encrypted or in another enterprise
project).

Like every command that runs a flow, it imports Prefect and the flow inside ``flow_from_shell``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import CredentialsOption, VerboseOption, app, checked, console, err
from cli.flowrun import flow_from_shell
from imsflow.validation import check_description, check_enterprise_project_id, check_image_name, check_uuid


@app.command()
def replicate(
    image_id: Annotated[
        str,
        typer.Argument(
            help="ID of the image to copy (a system-disk or data-disk image; not a full-ECS or ISO image).",
            callback=checked(check_uuid, "IMAGE_ID"),
        ),
    ],
    name: Annotated[
        str,
        typer.Option("--name", "-n", help="Name of the copy.", callback=checked(check_image_name, "--name")),
    ],
    description: Annotated[
        str | None,
        typer.Option(
            help="Description of the copy (imsflow adds a marker to it, by which a re-run finds the copy).",
            callback=checked(check_description, "--description"),
        ),
    ] = None,
    cmk_id: Annotated[
        str | None,
        typer.Option(
            "--cmk-id",
            help="ID (UUID) of the KMS key to encrypt the copy with.",
            callback=checked(check_uuid, "--cmk-id"),
        ),
    ] = None,
    enterprise_project_id: Annotated[
        str | None,
        typer.Option(
            "--enterprise-project-id",
            help="Enterprise project of the copy: 0 (the default project) or its ID (UUID).",
            callback=checked(check_enterprise_project_id, "--enterprise-project-id"),
        ),
    ] = None,
    timeout: Annotated[int, typer.Option(help="Minutes to wait for the copy job.")] = 60,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Copy an image within its region (encrypted with --cmk-id, or into --enterprise-project-id), wait until
    the copy is active, and print its ID.

    Running it again with the same image, name, key and enterprise project finds the copy instead of making
    a second one (also after a crash).
    """
    with flow_from_shell(verbose) as shell:
        from flows.replication import ReplicateImageParams, replicate_image

        params = ReplicateImageParams(
            image_id=image_id,
            name=name,
            description=description,
            cmk_id=cmk_id,
            enterprise_project_id=enterprise_project_id,
            timeout_minutes=timeout,
        )
        if credentials_block is None:
            shell.settings().check_transport()
        result = shell.run(replicate_image, params, credentials_block)
    # The copy's ID alone on stdout, for scripts; what it is on stderr.
    console.print(result.image_id)
    encrypted = f", encrypted with {result.cmk_id}" if result.cmk_id else ""
    err.print(
        f"[dim]{result.name}: a copy of {result.source_id}{encrypted}, enterprise project "
        f"{result.enterprise_project_id} ({result.how})[/]"
    )
