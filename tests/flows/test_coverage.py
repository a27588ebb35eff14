"""The coverage flow and ``imsflow coverage`` on the in-process local cloud (virtual time): gaps, events, the
table artifact, the state, a fleet run closing the gaps, and the CLI's exit code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from pydantic import ValidationError

import runtime.events
import tasks.coverage
from flows.coverage import CoverageParams, CoverageResult, check_image_coverage
from flows.fleet import FleetParams, create_images_for_fleet
from imsflow.errors import CoverageGapError
from localcloud import LocalCloud, ManualClock, Seed
from tasks.image import INSTANCE_TAG, REQUEST_TAG
from tests.support import cloud_runtime, seed_data

NOW = datetime.now(UTC).replace(microsecond=0)
OTHER = "6f1c2d7e-0000-4000-8000-000000000999"  # untagged: never selected


def ecs_id(i: int) -> str:
    return f"6f1c2d7e-0000-4000-8000-{i + 200:012d}"


def image_id(n: int) -> str:
    return f"2b3c4d5e-0000-4000-8000-{n:012d}"


def made(n: int, instance: str, hours_old: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": image_id(n),
        "name": f"img-{n}",
        "project": "eu-de",
        "created_at": (NOW - timedelta(hours=hours_old)).isoformat(),
        "tags": [f"{REQUEST_TAG}.req{n}", f"{INSTANCE_TAG}.{instance}"],
        **extra,
    }


def coverage_cloud(images: list[dict[str, Any]] | None = None) -> LocalCloud:
    servers = [
        {
            "id": ecs_id(i),
            "name": f"node-{i:02d}",
            "project": "eu-de",
            "status": "SHUTOFF",
            "tags": ["backup=nightly"],
        }
        for i in range(3)
    ]
    servers.append({"id": OTHER, "name": "scratch", "project": "eu-de", "status": "SHUTOFF"})
    data = seed_data(servers=servers, images=images or [])
    data["limits"] = {"image_quota": 100}
    cloud = LocalCloud(seed=Seed.model_validate(data), clock=ManualClock(NOW))
    _clouds.append(cloud)
    return cloud


_clouds: list[LocalCloud] = []


@pytest.fixture(autouse=True)
def wall_clock_is_the_clouds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ages are judged on the wall clock (``tasks.coverage.now_utc``); here it is the test's local cloud's
    virtual clock, which starts at :data:`NOW`, so an image made 30 h before is 30 h old however long the
    run has gone on (the real clock moves on: 30.1 h after six minutes)."""
    monkeypatch.setattr(tasks.coverage, "now_utc", lambda: _clouds[-1].clock.now() if _clouds else NOW)
    yield
    _clouds.clear()


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The events the flow emits (the test server's event pipeline is not what is tested here)."""
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(runtime.events, "emit_event", lambda **kwargs: events.append(kwargs))
    return events


async def run(cloud: LocalCloud, params: CoverageParams) -> tuple[Any, Any]:
    with cloud_runtime(cloud):
        state = await check_image_coverage(params, return_state=True)
    return state, await state.aresult(raise_on_failure=False)


async def artifact_rows(state: Any) -> list[dict[str, Any]]:
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["image-coverage"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert len(artifacts) == 1
    data = artifacts[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    assert isinstance(rows, list)
    return rows


async def test_an_old_last_image_is_a_gap_with_an_event_a_row_and_a_failed_run(
    emitted: list[dict[str, Any]],
) -> None:
    cloud = coverage_cloud(
        [
            made(1, ecs_id(0), hours_old=30),  # too old
            made(2, ecs_id(1), hours_old=2),  # covered
            made(3, ecs_id(2), hours_old=1, status="killed"),  # the only image failed
            made(4, ecs_id(2), hours_old=100),
            made(5, OTHER, hours_old=1),  # not selected
        ]
    )
    state, error = await run(cloud, CoverageParams(tags=["backup=nightly"]))

    assert state.is_failed()
    assert isinstance(error, CoverageGapError)
    assert state.message.startswith("CoverageGapError: 2 of 3 ECSs (backup=nightly) have no active image")
    assert "node-00, node-02" in state.message
    assert "to do: image them: `imsflow fleet`" in state.message
    assert sorted(error.gaps) == [ecs_id(0), ecs_id(2)]
    result = error.result
    assert isinstance(result, CoverageResult)
    verdicts = {r.server_name: (r.verdict, r.reason) for r in result.rows}
    assert verdicts == {
        "node-00": ("gap", "newest active image not younger than 26 h"),
        "node-01": ("covered", "active image younger than 26 h"),
        "node-02": ("gap", "newest active image not younger than 26 h"),
    }

    rows = await artifact_rows(state)
    assert list(rows[0]) == ["verdict", "reason", "ECS", "ECS ID", "newest image", "age"]
    by_ecs = {row["ECS"]: row for row in rows}
    assert by_ecs["node-00"]["verdict"] == "gap"
    assert by_ecs["node-00"]["newest image"] == "img-1"
    assert by_ecs["node-00"]["age"] == "30 h"
    assert by_ecs["node-01"]["verdict"] == "covered"

    assert [e["event"] for e in emitted] == ["imsflow.coverage.gap"] * 2
    first = next(e for e in emitted if e["resource"]["prefect.resource.id"] == f"imsflow.ecs.{ecs_id(0)}")
    assert first["resource"]["prefect.resource.name"] == "node-00"
    assert first["payload"]["image_id"] == image_id(1)
    assert first["payload"]["age_hours"] == pytest.approx(30, abs=0.1)
    assert first["payload"]["max_age"] == "26h"
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in first["related"]}
    assert roles["image"] == f"imsflow.image.{image_id(1)}"
    assert roles["flow-run"] == f"prefect.flow-run.{state.state_details.flow_run_id}"
    # Reads only.
    stats = cloud.stats()
    assert stats.get("ims.create_image", 0) == 0
    assert stats.get("ims.delete_image", 0) == 0


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
async def test_no_gap_after_a_fleet_run_and_a_gap_once_the_images_age(
    emitted: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = coverage_cloud()
    params = CoverageParams(tags=["backup=nightly"], max_age="26h")
    before, _ = await run(cloud, params)
    assert before.is_failed()
    assert len(emitted) == 3

    fleet = FleetParams(tags=["backup=nightly"], run_date=date(2026, 11, 27), requests_per_second=10_000)
    with cloud_runtime(cloud):
        fleet_state = await create_images_for_fleet(fleet, return_state=True)
    assert fleet_state.is_completed(), fleet_state.message

    emitted.clear()
    # Ages are judged on the wall clock; here the wall clock is the local cloud's virtual one.
    assert isinstance(cloud.clock, ManualClock)
    monkeypatch.setattr(tasks.coverage, "now_utc", cloud.clock.now)
    after, result = await run(cloud, params)
    assert after.is_completed(), after.message
    assert isinstance(result, CoverageResult)
    assert (
        after.message == "every ECS covered: 3 ECSs (backup=nightly) have an active image younger than 26 h"
    )
    assert {r.verdict for r in result.rows} == {"covered"}
    assert emitted == []

    cloud.clock.advance(timedelta(hours=26).total_seconds())  # a day and two hours without a fleet run
    later, error = await run(cloud, params)
    assert later.is_failed()
    assert isinstance(error, CoverageGapError)
    assert len(error.gaps) == 3
    assert {r.reason for r in error.result.rows} == {"newest active image not younger than 26 h"}
    assert len(emitted) == 3


async def test_instance_ids_and_an_unknown_one(emitted: list[dict[str, Any]]) -> None:
    cloud = coverage_cloud([made(1, ecs_id(0), hours_old=1)])
    unknown = "6f1c2d7e-0000-4000-8000-999999999999"
    state, error = await run(cloud, CoverageParams(instance_ids=[ecs_id(0), unknown], max_age="90m"))
    assert state.is_failed()
    assert isinstance(error, CoverageGapError)
    assert error.gaps == [unknown]
    [gap] = [r for r in error.result.rows if r.verdict == "gap"]
    assert gap.reason.startswith("no such ECS in the project")
    assert [e["resource"]["prefect.resource.id"] for e in emitted] == [f"imsflow.ecs.{unknown}"]


async def test_a_selection_that_matches_nothing_fails(emitted: list[dict[str, Any]]) -> None:
    cloud = coverage_cloud()
    state, error = await run(cloud, CoverageParams(tags=["backup=never"]))
    assert state.is_failed()
    assert isinstance(error, CoverageGapError)
    assert "no ECS matches backup=never" in state.message


def test_parameters_form_and_rules() -> None:
    with pytest.raises(ValidationError, match="choose ECSs"):
        CoverageParams()
    with pytest.raises(ValidationError, match="either by instance IDs"):
        CoverageParams(instance_ids=[ecs_id(0)], tags=["a=b"])
    with pytest.raises(ValidationError, match="an age such as 26h"):
        CoverageParams(tags=["a=b"], max_age="yesterday")
    schema = CoverageParams.model_json_schema()
    assert schema["title"] == "Coverage"
    fields = schema["properties"]
    assert fields["max_age"]["default"] == "26h"
    assert fields["max_age"]["title"] == "Maximum age"
    assert "pattern" in fields["max_age"]
    assert [name for name, _ in sorted(fields.items(), key=lambda kv: kv[1]["position"])] == [
        "instance_ids",
        "tags",
        "name_contains",
        "max_age",
    ]


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
def test_cli_coverage_table_and_exit_codes(monkeypatch: pytest.MonkeyPatch, emitted: list[Any]) -> None:
    from typer.testing import CliRunner

    from cli.app import QUIET_PREFECT
    from cli.main import app

    for name, value in QUIET_PREFECT.items():  # restored after the test, unlike the CLI's setdefault
        monkeypatch.setenv(name, value)
    cloud = coverage_cloud(
        [made(1, ecs_id(0), hours_old=30), made(2, ecs_id(1), hours_old=2), made(3, ecs_id(2), hours_old=3)]
    )
    with cloud_runtime(cloud):
        gap = CliRunner().invoke(app, ["coverage", "--tag", "backup=nightly", "--max-age", "26h"])
        covered = CliRunner().invoke(app, ["coverage", "--tag", "backup=nightly", "--max-age", "2d"])
        bad = CliRunner().invoke(app, ["coverage", "--tag", "backup=nightly", "--max-age", "soon"])
        none = CliRunner().invoke(app, ["coverage"])
    assert gap.exit_code == 3, gap.output
    assert "3 ECSs, 1 without an active image younger than 26 h" in gap.output
    for word in ("verdict", "reason", "newest image", "node-00", "gap", "covered", "img-1", "30 h"):
        assert word in gap.output, word
    assert "1 of 3 ECSs (backup=nightly) have no active image younger than 26 h: node-00" in gap.output
    assert "imsflow fleet" in gap.output  # the hint
    assert covered.exit_code == 0, covered.output
    assert "every ECS covered: 3 ECSs" in covered.output
    assert bad.exit_code == 2
    assert "an age such as 26h" in bad.output
    assert none.exit_code == 2
    assert "choose ECSs" in none.output


def test_the_coverage_deployment_runs_daily_after_the_nightly_fleet() -> None:
    from deployments.serve import build_deployments, load_spec

    spec = {d["name"]: d for d in load_spec()}
    entry = spec["coverage"]
    assert entry["entrypoint"] == "flows/coverage.py:check_image_coverage"
    [schedule] = entry["schedules"]
    assert (schedule["cron"], schedule["timezone"]) == ("0 7 * * *", "UTC")
    assert spec["nightly-fleet"]["schedules"][0]["cron"] == "0 2 * * *"  # five hours before
    assert entry["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    # The deployment's parameters are a valid form, with the fleet's selection.
    params = CoverageParams.model_validate(entry["parameters"]["params"])
    assert params.tags == spec["nightly-fleet"]["parameters"]["params"]["tags"]
    assert params.max_age == "26h"

    [deployment], skipped = build_deployments(only={"coverage"})
    assert skipped == []
    assert deployment.name == "coverage"
    assert deployment.enforce_parameter_schema is True
    schema = deployment._parameter_openapi_schema.model_dump()
    assert "max_age" in schema["definitions"]["CoverageParams"]["properties"]
