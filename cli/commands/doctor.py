"""``imsflow doctor``: a read-only check of the configured cloud, one line per check.

The checks are in ``imsflow.doctor`` (no Prefect); this module only picks the settings and prints. Prefect is
imported only for ``--credentials-block``: loading a block is the CLI's business, not the library's.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape

from cli.app import app, console, fail, friendly_errors
from cli.flowrun import flow_from_shell
from imsflow.doctor import CheckResult, CheckStatus, run_checks
from imsflow.settings import ImsflowSettings

_MARKS = {
    CheckStatus.ok: "[green]✓[/]",
    CheckStatus.failed: "[bold red]✗[/]",
    CheckStatus.skipped: "[dim]-[/]",
}


def _load_block(name: str) -> ImsflowSettings:
    with flow_from_shell() as shell:
        from runtime.credentials import load_settings

        shell.server()  # without PREFECT_API_URL, a temporary server (which has no blocks: the error says so)
        try:
            return asyncio.run(load_settings(name))
        except Exception as exc:  # not found, no server, a block that makes no valid settings: one line
            fail(
                f"cannot load the imsflow-credentials block {name!r}: {exc}",
                hint="Check the block name (Blocks in the Prefect UI) and PREFECT_API_URL.",
            )


def format_result(result: CheckResult, width: int) -> list[str]:
    """The lines (rich markup) of one check: mark, name, detail; then the request id and hint of a failure."""
    from imsflow.redact import redact

    detail = escape(redact(result.detail))
    if result.status is CheckStatus.skipped:
        detail = f"[dim]{detail}[/]"
    lines = [f"  {_MARKS[result.status]} [bold]{result.name:<{width}}[/]  {detail}"]
    indent = " " * (width + 6)
    if result.request_id:
        lines.append(f"{indent}request id: {escape(result.request_id)}")
    if result.hint and result.status is CheckStatus.failed:
        lines.append(f"{indent}[dim]hint:[/] {escape(result.hint)}")
    return lines


def summary(results: list[CheckResult]) -> str:
    failed = sum(r.failed for r in results)
    if failed:
        return f"{failed} of {len(results)} checks failed"
    skipped = sum(r.status is CheckStatus.skipped for r in results)
    if skipped:
        return f"{len(results) - skipped} of {len(results)} checks passed, {skipped} skipped"
    return f"all {len(results)} checks passed"


@app.command()
def doctor(
    credentials_block: Annotated[
        str | None,
        typer.Option(
            "--credentials-block",
            help="Check the settings of this imsflow-credentials block instead of IMSFLOW_* "
            "(needs PREFECT_API_URL).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Seconds for each DNS lookup and TLS handshake (default: IMSFLOW_CONNECT_TIMEOUT).",
        ),
    ] = None,
) -> None:
    """Check the configured cloud before a first real run (read-only).

    Nothing is created, stopped or deleted. The checks, in order:

    settings   profile, region, endpoints, auth mode (secrets masked)
    dns        each endpoint host resolves
    tls        TLS handshake (plain http only to loopback)
    token      password login, or a signed IAM call with AK/SK
    project    the project ID (settings, token or IAM by region)
    ecs-list   ECS lists servers
    ims-list   IMS lists private images
    ims-quota  IMS image quota: used/quota
    ims-job    the IMS job query answers "job not found" for an
               unknown job ID

    One line per check: ✓ ok, ✗ failed (with the cloud's request ID and
    a hint), - skipped (it needs a check that failed).

    Exit code 0 when every check passed, 1 when any failed.
    """
    with friendly_errors():
        settings = _load_block(credentials_block) if credentials_block else ImsflowSettings()
        source = f"block {credentials_block}" if credentials_block else "IMSFLOW_*, .env"
        console.print(
            f"[bold]imsflow doctor[/]: profile {settings.profile.value}, region {escape(settings.region)} "
            f"({source}); read-only"
        )
        results = asyncio.run(run_checks(settings, timeout=timeout))
    width = max(len(r.name) for r in results)
    for result in results:
        for line in format_result(result, width):
            console.print(line)
    failed = any(r.failed for r in results)
    console.print(f"[bold red]{summary(results)}[/]" if failed else f"[bold green]{summary(results)}[/]")
    if failed:
        raise typer.Exit(1)
