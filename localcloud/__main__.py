"""``python -m localcloud [--host 127.0.0.1] [--port 8780] [--seed FILE]``."""

from __future__ import annotations

import sys

from localcloud.server import cli

if __name__ == "__main__":
    sys.exit(cli())
