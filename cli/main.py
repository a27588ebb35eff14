"""The ``imsflow`` command with every command registered: :data:`app` (for tests) and :func:`main`."""

from __future__ import annotations

import os
import sys

import typer

from cli.app import app, err, fail

# isort: off
# Importing a command module registers its commands on ``app``; this order is the order of `imsflow --help`.
from cli.commands import image  # noqa: F401  create, demo
from cli.commands import local  # noqa: F401  cloud, config
from cli.commands import doctor  # noqa: F401  doctor
from cli.commands import fleet  # noqa: F401  fleet
from cli.commands import coverage  # noqa: F401  coverage
from cli.commands import limits  # noqa: F401  limits
from cli.commands import ops  # noqa: F401  delete, export, prune, serve, notify, blocks
from cli.commands import sharing  # noqa: F401  share, accept
from cli.commands import replication  # noqa: F401  replicate
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    from imsflow.redact import install_redaction

    # Masks passwords, SKs and tokens in every log line the command or Prefect writes (flows install it too).
    install_redaction()
    try:
        check_ca_file()
    except typer.Exit as exit_:  # outside the app, so typer does not turn it into an exit code itself
        sys.exit(exit_.exit_code)
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def check_ca_file() -> None:
    """Fail in one line when ``SSL_CERT_FILE`` names no file.

    Prefect builds an HTTPS transport while it is imported, and so does every client: each would fail on it
    with a traceback (Prefect's own logged at import, before any command could say what is wrong).
    """
    path = os.environ.get("SSL_CERT_FILE")
    if path and not os.path.isfile(path):
        fail(
            f"SSL_CERT_FILE={path}: no such file",
            hint="Point SSL_CERT_FILE at a PEM bundle of the CAs to trust, or unset it for the default ones.",
            code=2,
        )
