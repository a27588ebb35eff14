"""``imsflow limits``: imsflow's Prefect limits, who holds the IMS job slots, freeing those of dead runs."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape

from cli.app import VerboseOption, app, console
from cli.flowrun import flow_from_shell


async def _limits(reset: bool) -> list[str]:
    """The lines to print (rich markup)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from runtime.budget import API_LIMIT, JOBS_LIMIT
    from runtime.slots import SlotLimitMissing, inspect, reconcile

    lines: list[str] = []
    async with get_client() as client:
        try:
            state = await (reconcile if reset else inspect)(client, JOBS_LIMIT)
        except SlotLimitMissing:
            lines.append(f"[bold]{JOBS_LIMIT}[/]  not created yet (the first fleet run creates it)")
        else:
            lines.append(f"[bold]{JOBS_LIMIT}[/]  {state.held} of {state.limit} IMS job slots held")
            lines += [f"  {escape(c.holder())}" for c in state.live]
            if reset:
                if state.skipped:
                    lines.append("another run is freeing slots right now: nothing done; try again")
                else:
                    lines.append(
                        escape(state.released_line()) or "nothing to free: no run that is gone holds a slot"
                    )
            else:
                lines += [f"  [red]✗ {escape(c.holder())}: {why}[/]" for c, why in state.dead]
                nobody = state.held - sum(c.slots for c in state.live) - sum(c.slots for c, _ in state.dead)
                if nobody > 0:
                    lines.append(f"  [red]✗ {nobody} held by no run imsflow knows of[/]")
                if state.unclaimed:
                    lines.append(
                        "slots marked ✗ are held by runs that are gone: `imsflow limits --reset` frees them "
                        "(the next fleet run frees them too)"
                    )
        try:
            api = await client.read_global_concurrency_limit_by_name(API_LIMIT)
        except ObjectNotFound:
            lines.append(f"[bold]{API_LIMIT}[/]  not created yet (the first fleet run creates it)")
        else:
            lines.append(
                f"[bold]{API_LIMIT}[/]  rate limit of {api.slot_decay_per_second:g} API requests/s: "
                f"{api.active_slots} of {api.limit} slots held (they free themselves)"
            )
    return lines


@app.command()
def limits(
    reset: Annotated[
        bool,
        typer.Option(
            "--reset", help="Free the IMS job slots held by runs that are gone (live runs keep theirs)."
        ),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Show imsflow's Prefect limits (IMS job slots, API budget) and who holds the job slots.

    A killed fleet run leaves its job slots held. The next fleet run frees them when it starts.

    --reset frees them now. Slots of runs that are still running are never freed.
    """
    with flow_from_shell(verbose) as shell:
        shell.server()
        lines = asyncio.run(_limits(reset))
    for line in lines:
        console.print(line, soft_wrap=True)
