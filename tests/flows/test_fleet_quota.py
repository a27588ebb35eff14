"""Quota-aware fleets: the new images are counted against the image quota before anything is submitted."""

from __future__ import annotations

from typing import Any

import pytest

from flows.fleet import FleetResult, create_images_for_fleet
from localcloud import LocalCloud
from tests.flows.test_fleet import fleet_cloud, params
from tests.support import cloud_runtime


def small_quota_cloud(n: int, quota: int) -> LocalCloud:
    return fleet_cloud(n, limits={"image_quota": quota})


async def fleet(cloud: LocalCloud, **values: Any) -> tuple[Any, FleetResult | None]:
    with cloud_runtime(cloud):
        state = await create_images_for_fleet(params(name_contains="node", **values), return_state=True)
    result = await state.aresult(raise_on_failure=False)
    return state, result if isinstance(result, FleetResult) else None


async def test_a_fleet_too_big_for_the_quota_is_refused_before_any_submission() -> None:
    cloud = small_quota_cloud(6, quota=4)
    state, _ = await fleet(cloud)
    assert state.is_failed()
    refusal = (
        "ImageQuotaError: only 4 of the fleet's 6 new images fit the image quota (0 of 4 used): make room "
        "with `imsflow prune` (or delete images), or image the first 4 with --fit-quota"
    )
    assert refusal in (state.message or "")
    stats = cloud.stats()
    assert stats.get("ims.create_image", 0) == 0
    assert stats.get("ecs.stop_servers", 0) == 0


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
async def test_fit_quota_images_the_first_that_fit_and_a_rerun_counts_only_new_images() -> None:
    cloud = small_quota_cloud(6, quota=4)
    state, result = await fleet(cloud, fit_quota=True)
    assert state.is_completed(), state.message
    assert state.message == "4 images active, 2 ECSs skipped: no room in the image quota"
    assert result is not None
    outcomes = {r.server_name: r.outcome for r in result.rows}
    assert outcomes == {f"node-{i:02d}": "submitted" if i < 4 else "skipped" for i in range(6)}
    assert "no room in the image quota (0 of 4 used)" in (result.rows[-1].error or "")
    assert cloud.stats()["ims.create_image"] == 4

    # The same fleet again: the four made are adopted or resumed whatever the quota; the two new have no room.
    again, _ = await fleet(cloud)
    assert again.is_failed()
    assert "only 0 of the fleet's 2 new images fit the image quota (4 of 4 used)" in (again.message or "")
    assert cloud.stats()["ims.create_image"] == 4


async def test_the_dry_run_says_what_would_be_made_and_that_a_real_run_would_refuse() -> None:
    cloud = small_quota_cloud(6, quota=4)
    state, result = await fleet(cloud, dry_run=True)
    assert state.is_completed()
    assert (state.message or "").startswith(
        "dry run: 6 images would be made, 0 made already; image quota: 0 of 4 used, room for 4; "
        "this fleet makes 6 new images; a real run would refuse: only 4 of the fleet's 6 new images fit"
    )
    assert result is not None
    assert result.dry_run
    assert {r.outcome for r in result.rows} == {"would submit"}
    stats = cloud.stats()
    assert stats.get("ims.create_image", 0) == 0
    assert stats.get("ecs.stop_servers", 0) == 0


def test_cli_dry_run_exits_1_with_the_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.app import QUIET_PREFECT
    from cli.main import app

    for name, value in QUIET_PREFECT.items():
        monkeypatch.setenv(name, value)
    cloud = small_quota_cloud(3, quota=2)
    args = ["fleet", "--name-contains", "node", "--date", "2026-11-27", "--dry-run"]
    with cloud_runtime(cloud):
        dry = CliRunner().invoke(app, args)
        fitted = CliRunner().invoke(app, [*args, "--fit-quota"])
    assert dry.exit_code == 1, dry.output
    text = " ".join(dry.output.split())
    assert "image quota: 0 of 2 used, room for 2; this fleet makes 3 new images" in text
    assert "would submit" in text
    assert "dry run: nothing was stopped, started or submitted" in text
    assert "a real run would refuse: only 2 of the fleet's 3 new images fit" in text
    assert fitted.exit_code == 0, fitted.output
    assert cloud.stats().get("ims.create_image", 0) == 0
