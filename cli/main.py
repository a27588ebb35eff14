"""The ``imsflow`` command with every command registered: :data:`app` (for tests) and :func:`main`."""

from __future__ import annotations

import sys

from cli.app import app, err

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
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
