"""The client library stands alone: no Prefect, no local cloud."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_modules_do_not_import_prefect_or_localcloud() -> None:
    code = (
        "import sys\n"
        "import imsflow, imsflow.client, imsflow.settings, imsflow.models, imsflow.auth, imsflow.errors\n"
        "import imsflow.validation, imsflow.redact\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'localcloud', 'fastapi'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
