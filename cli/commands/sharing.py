"""Image sharing: ``imsflow share`` (the owner) and ``imsflow accept`` (the receiving project).

Like every command that runs a flow, they import Prefect and the flows inside ``flow_from_shell``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import CredentialsOption, VerboseOption, app, checked, console
from cli.flowrun import ShellFlow, flow_from_shell
from imsflow.validation import check_project_id, check_uuid


def _check_settings(shell: ShellFlow, credentials_block: str | None) -> None:
    """Refuse unsafe ``IMSFLOW_*`` endpoints before the run (a credentials block is checked by the flow)."""
    if credentials_block is None:
        shell.settings().check_transport()


@app.command()
def share(
    image_id: Annotated[
        str,
        typer.Argument(help="ID of your private image to share.", callback=checked(check_uuid, "IMAGE_ID")),
    ],
    project: Annotated[
        list[str],
        typer.Option(
            "--project",
            "-p",
            help="ID (32 hex digits) of a project to share with (repeatable; at most 256 per image).",
            callback=checked(check_project_id, "--project"),
        ),
    ],
    remove: Annotated[
        bool, typer.Option("--remove", help="Stop sharing the image with these projects instead.")
    ] = False,
    timeout: Annotated[int, typer.Option(help="Minutes to wait for the sharing job.")] = 10,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Share a private image with other projects (or stop sharing it with --remove) and wait for the job.

    A project already a member (with --remove: not one) is left as it is. Then, in each project:

    imsflow accept IMAGE_ID --credentials-block RECEIVER
    """
    with flow_from_shell(verbose) as shell:
        from flows.sharing import ShareImageParams, share_image

        params = ShareImageParams(image_id=image_id, projects=project, remove=remove, timeout_minutes=timeout)
        _check_settings(shell, credentials_block)
        result = shell.run(share_image, params, credentials_block)
    verb = "no longer shared with" if remove else "shared with"
    changed = ", ".join(result.changed) or "no project (nothing to change)"
    line = f"{result.image_id} {verb} {changed}"
    if result.unchanged:
        already = "not a member" if remove else "already a member"
        line += f"; {already}: {', '.join(result.unchanged)}"
    console.print(line)


@app.command()
def accept(
    image_id: Annotated[
        list[str],
        typer.Argument(
            help="ID of an image shared with this project (several may be given).",
            callback=checked(check_uuid, "IMAGE_ID"),
        ),
    ],
    reject: Annotated[
        bool,
        typer.Option(
            "--reject",
            help="Reject instead: the image stays out of the project's image list (it can still be used).",
        ),
    ] = False,
    timeout: Annotated[int, typer.Option(help="Minutes to wait for the job.")] = 10,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Accept images shared with this project (the RECEIVING project: use its credentials, e.g. with
    --credentials-block) and wait for the job; an accepted image appears in the project's image list."""
    status = "rejected" if reject else "accepted"
    with flow_from_shell(verbose) as shell:
        from flows.sharing import AcceptImageParams, accept_image

        params = AcceptImageParams(image_ids=image_id, status=status, timeout_minutes=timeout)
        _check_settings(shell, credentials_block)
        result = shell.run(accept_image, params, credentials_block)
    console.print(f"{', '.join(result.image_ids)} {result.status} in project {result.project_id}")
