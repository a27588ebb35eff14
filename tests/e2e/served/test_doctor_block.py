"""``imsflow doctor --credentials-block``: the checks run with a block's identity, loaded from the server."""

from __future__ import annotations

import pytest

from tests.e2e.stack import OPS_PASSWORD, OPS_USER, Stack

pytestmark = pytest.mark.slow


def test_doctor_checks_the_named_block(stack: Stack) -> None:
    assert stack.run_cli("blocks", "register").returncode == 0
    stack.save_credentials_block("doctor-ops", OPS_USER, OPS_PASSWORD)

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
