"""The fleet flow on the in-process local cloud (virtual time): 20 ECSs, failures, filters, names, re-runs."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from flows.fleet import FleetParams, FleetResult, create_images_for_fleet, render_name
from localcloud import LocalCloud
from localcloud.seed import FaultRuleSeed
from tests.support import cloud_runtime, endpoints, make_cloud, seed_data

#: Fleets of up to 20 ECSs: the full run (CI), not the quick loop. One base URL for all services is the
#: single flow's second layout (test_create_image) and every e2e fleet's (test_fleet_crash, the README).
pytestmark = pytest.mark.slow

DAY = date(2026, 11, 27)


def ecs_id(i: int) -> str:
    return f"6f1c2d7e-0000-4000-8000-{i + 100:012d}"


def fleet_cloud(n: int = 20, running: tuple[int, ...] = (), **extra: Any) -> LocalCloud:
    servers = [
        {
            "id": ecs_id(i),
            "name": f"node-{i:02d}",
            "project": "eu-de",
            "status": "ACTIVE" if i in running else "SHUTOFF",
            "tags": [f"shard={i % 2}", "env=prod"],
        }
        for i in range(n)
    ]
    base = seed_data(servers=servers)
    base["timing"] = {"image_job_seconds": {"mean": 60, "spread": 20}, "stop_seconds": 10, "start_seconds": 5}
    base["limits"] = {"image_quota": 500, **extra.pop("limits", {})}
    base.update(extra)
    return make_cloud(**base)


def params(**values: Any) -> FleetParams:
    values.setdefault("run_date", DAY)
    # Real-time budget: keep it out of the way here (its most; at 1000/s refills wait ~1 s for the decay).
    values.setdefault("requests_per_second", 10_000)
    return FleetParams(**values)


async def run(cloud: LocalCloud, p: FleetParams) -> tuple[Any, FleetResult]:
    with cloud_runtime(cloud):
        state = await create_images_for_fleet(p, return_state=True)
    result = await state.aresult(raise_on_failure=False)
    assert isinstance(result, FleetResult)
    return state, result


async def test_one_failing_ecs_does_not_stop_the_others() -> None:
    # node-07 runs, and we were not asked to stop it. IMS refuses a 7th running job (IMG.0060), so the
    # run also shows that the fleet never has more jobs in flight than its cap.
    cloud = fleet_cloud(20, running=(7,), limits={"max_running_image_jobs": 6})
    state, result = await run(cloud, params(tags=["env=prod"], max_concurrent=6))

    assert state.is_failed()
    assert "1 of 20 ECSs failed" in state.message
    assert "node-07" in state.message
    by_name = {r.server_name: r for r in result.rows}
    assert len(by_name) == 20
    assert by_name["node-07"].outcome == "failed"
    assert "ACTIVE" in (by_name["node-07"].error or "")
    done = [r for r in result.rows if r.outcome == "submitted"]
    assert len(done) == 19
    images = cloud.ims.images
    assert {images[r.image_id].status for r in done if r.image_id} == {"active"}
    assert all(r.job_id and r.job_seconds > 0 for r in done)
    stats = cloud.stats()
    assert stats["ims.create_image"] == 19  # none refused for the cap, none made twice
    assert stats["iam.create_token"] == 1  # one token for the whole fleet
    assert stats.get("faults.rate_limit", 0) == 0


async def test_rerun_is_exactly_once() -> None:
    cloud = fleet_cloud(3)
    p = params(name_contains="node", max_concurrent=3)
    _, first = await run(cloud, p)
    _, second = await run(cloud, p)
    assert {r.image_id for r in first.rows} == {r.image_id for r in second.rows}
    assert {r.outcome for r in second.rows} == {"resumed"}
    assert cloud.stats()["ims.create_image"] == 3
    assert len(cloud.ims.images) == 3


async def test_filters_tag_name_and_status() -> None:
    cloud = fleet_cloud(6, running=(1, 3))
    _, by_tag = await run(cloud, params(tags=["shard=0"]))
    assert sorted(r.server_name for r in by_tag.rows) == [f"node-{i:02d}" for i in (0, 2, 4)]
    _, by_name = await run(cloud, params(name_contains="node-0", status="ACTIVE", stop_if_running=True))
    assert sorted(r.server_name for r in by_name.rows) == ["node-01", "node-03"]
    assert all(r.outcome == "submitted" for r in by_name.rows)
    assert cloud.ecs.servers[ecs_id(1)].status == "ACTIVE"  # stopped, imaged, started again
    assert cloud.stats()["ecs.stop_servers"] == 2


async def test_job_timeout_row_says_timeout_and_the_ecs_stays_stopped() -> None:
    # The job outlasts the run's timeout and may still be running: IMS needs the ECS stopped until it ends,
    # so imsflow must not try to start it (the cloud would refuse, and the row would report that instead).
    cloud = fleet_cloud(2, running=(0,))
    cloud.faults.add(FaultRuleSeed.model_validate({"kind": "job_stuck", "operation": "ims.create_image"}))
    state, result = await run(
        cloud, params(name_contains="node", stop_if_running=True, timeout_minutes=1, max_concurrent=2)
    )

    assert state.is_failed()
    assert "2 of 2 ECSs failed" in state.message
    by_name = {r.server_name: r for r in result.rows}
    for row in by_name.values():
        assert row.outcome == "failed"
        assert row.image_id is None
        assert (row.error or "").startswith("timeout: "), row.error
        # (the lanes share the cloud's clock, so a lane may have waited a little longer than 60 s)
        assert re.search(r"job \w+ still RUNNING after \d+ s", row.error or ""), row.error
        assert "ECS left stopped" in (row.error or "")
    stats = cloud.stats()
    assert stats["ims.create_image"] == 2
    assert stats["ecs.stop_servers"] == 1  # node-00 was running: stopped by imsflow ...
    assert stats.get("ecs.start_servers", 0) == 0  # ... and left stopped while its job may run
    assert {s.status for s in cloud.ecs.servers.values()} == {"SHUTOFF"}


async def test_failed_job_starts_the_ecs_again_and_the_row_names_the_job() -> None:
    cloud = fleet_cloud(1, running=(0,))
    cloud.faults.add(
        FaultRuleSeed.model_validate(
            {
                "kind": "job_fail",
                "operation": "ims.create_image",
                "error_code": "IMG.0037",
                "fail_reason": "disk snapshot failed",
            }
        )
    )
    state, result = await run(cloud, params(name_contains="node", stop_if_running=True))

    assert state.is_failed()
    [row] = result.rows
    assert row.outcome == "failed"
    assert "IMG.0037" in (row.error or "")
    assert cloud.stats()["ecs.start_servers"] == 1
    assert cloud.ecs.servers[ecs_id(0)].status == "ACTIVE"


async def test_name_template_and_unknown_instance() -> None:
    cloud = fleet_cloud(3)
    missing = "6f1c2d7e-0000-4000-8000-999999999999"
    state, result = await run(
        cloud,
        params(
            instance_ids=[ecs_id(0), missing, ecs_id(2)], name_template="{server_name}-golden-{date:%Y%m%d}"
        ),
    )
    assert state.is_failed()
    assert missing in state.message
    names = {r.image_name for r in result.rows if r.outcome == "submitted"}
    assert names == {"node-00-golden-20261127", "node-02-golden-20261127"}
    assert {i.name for i in cloud.ims.images.values()} == names

    # The run's table artifact: one row per ECS, the unknown one included, with its outcome.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["fleet-images"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert len(artifacts) == 1
    data = artifacts[0].data
    table = json.loads(data) if isinstance(data, str) else data
    assert isinstance(table, list), table
    assert sorted(row["outcome"] for row in table) == ["failed", "submitted", "submitted"]
    assert {row["image name"] for row in table if row["outcome"] == "submitted"} == names
    assert all(row["job ID"] for row in table if row["outcome"] == "submitted")


def test_parameters_are_checked_before_any_call() -> None:
    with pytest.raises(ValidationError, match="template may use only"):
        FleetParams(tags=["a=b"], name_template="{hostname}")
    with pytest.raises(ValidationError, match="either by instance IDs"):
        FleetParams(instance_ids=[ecs_id(0)], tags=["a=b"])
    with pytest.raises(ValidationError, match="choose ECSs"):
        FleetParams()
    assert render_name("{server_name}-{date:%Y%m%d}", "web-1", "x", DAY) == "web-1-20261127"
    schema = FleetParams.model_json_schema()
    assert schema["properties"]["max_concurrent"]["default"] == 40


def test_cli_fleet_progress_summary_and_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.app import QUIET_PREFECT
    from cli.main import app

    for name, value in QUIET_PREFECT.items():  # restored after the test, unlike the CLI's setdefault
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "100")
    cloud = fleet_cloud(4, running=(2,))
    args = ["fleet", "--tag", "env=prod", "--date", "2026-11-27", "--requests-per-second", "10000"]
    with cloud_runtime(cloud):
        failed = CliRunner().invoke(app, args)
        bad = CliRunner().invoke(app, ["fleet", "--tag", "env=prod", "--name-template", "{nope}"])
    assert failed.exit_code == 1, failed.output
    assert "4 ECSs, 1 failed" in failed.output  # the summary table's title
    assert "submitted" in failed.output
    assert "node-02" in failed.output
    assert "1 of 4 ECSs failed" in failed.output
    assert cloud.stats()["ims.create_image"] == 3
    assert bad.exit_code == 2
    assert "template may use only" in bad.output


async def test_credentials_block_wins_over_the_environment() -> None:
    from runtime.credentials import ImsflowCredentials
    from tests.support import PASSWORD

    cloud = fleet_cloud(2)
    await ImsflowCredentials(
        profile="local",
        **endpoints(),
        domain="demo",
        username="alice",
        password=PASSWORD,
    ).asave("fleet-test", overwrite=True)
    # The runner's own settings carry a wrong password: only the block can make this work.
    with cloud_runtime(cloud, password="not-the-password"):
        state = await create_images_for_fleet(
            params(name_contains="node"), credentials_block="fleet-test", return_state=True
        )
    result = await state.aresult(raise_on_failure=False)
    assert isinstance(result, FleetResult)
    assert [r.outcome for r in result.rows] == ["submitted", "submitted"]
    assert cloud.stats()["iam.create_token"] == 1
