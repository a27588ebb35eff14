"""``imsflow cloud`` and ``imsflow config``: the local cloud, and the effective settings (no Prefect)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.app import app, console, fail, friendly_errors


@app.command()
def cloud(
    host: Annotated[str, typer.Option(help="Address to bind; keep it loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8780,
    seed: Annotated[
        Path | None, typer.Option(help="Seed file (YAML or JSON); the demo seed without it.", exists=True)
    ] = None,
) -> None:
    """Serve the local cloud (IAM, ECS and IMS emulator) until interrupted."""
    import errno

    from localcloud.server import main as serve_main

    try:
        serve_main(host=host, port=port, seed_path=seed)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        fail(
            f"{host}:{port} is in use: a local cloud may be running there already "
            f"(`curl -s {host}:{port}/_local/stats` answers if so)",
            hint="stop it, or serve this one on another --port (and point IMSFLOW_*_URL at it)",
        )


@app.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    with friendly_errors():
        from imsflow.settings import ImsflowSettings

        settings = ImsflowSettings()
        table = Table("setting", "value", title="imsflow settings (IMSFLOW_*, .env)")
        for key, value in settings.masked().items():
            table.add_row(key, value)
        console.print(table)
