"""``imsflow doctor --credentials-block``: the checks run with a block's identity, loaded from the server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.stack import OPS_PASSWORD, OPS_USER, ROOT, Stack

pytestmark = pytest.mark.slow


def test_doctor_checks_the_named_block(stack: Stack) -> None:
    assert stack.run_cli("blocks", "register").returncode == 0
    save = (
        "from runtime.credentials import ImsflowCredentials as C; "
        f"url = '{stack.cloud_url}'; "
        "C(profile='local', iam_url=url, ecs_url=url, ims_url=url, "
        f"domain='demo', username='{OPS_USER}', password='{OPS_PASSWORD}')"
        ".save('doctor-ops', overwrite=True)"
    )
    saved = subprocess.run(
        [sys.executable, "-c", save], env=stack.env, cwd=ROOT, capture_output=True, check=False
    )
    assert saved.returncode == 0, saved.stderr

    checked = stack.run_cli("doctor", "--credentials-block", "doctor-ops")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "(block doctor-ops)" in checked.stdout.splitlines()[0]
    # The block's user, not the environment's (IMSFLOW_USERNAME=demo).
    assert f"token for {OPS_USER}@demo" in checked.stdout
    assert OPS_PASSWORD not in checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1] == "all 9 checks passed"

    missing = stack.run_cli("doctor", "--credentials-block", "no-such-block")
    assert missing.returncode == 1
    assert "cannot load the imsflow-credentials block 'no-such-block'" in missing.stderr
