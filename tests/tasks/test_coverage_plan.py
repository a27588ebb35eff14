"""The coverage rule as a pure function: which ECSs have an active image younger than the maximum age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imsflow.models import Image
from tasks.coverage import SelectedEcs, age_text, plan_coverage
from tasks.image import INSTANCE_TAG, REQUEST_TAG, VOLUME_TAG

NOW = datetime(2026, 11, 27, 7, tzinfo=UTC)
MAX_AGE = timedelta(hours=26)
WEB = "6f1c2d7e-0000-4000-8000-000000000001"
DB = "6f1c2d7e-0000-4000-8000-000000000002"
SERVERS = [SelectedEcs(instance_id=WEB, name="web-1"), SelectedEcs(instance_id=DB, name="db-1")]


def image(n: int, instance: str = WEB, *, hours_old: float, status: str = "active", **extra: object) -> Image:
    return Image.model_validate(
        {
            "id": f"00000000-0000-4000-8000-{n:012d}",
            "name": f"img-{n}",
            "status": status,
            "created_at": (NOW - timedelta(hours=hours_old)).isoformat(),
            "tags": [f"{REQUEST_TAG}.key{n}", f"{INSTANCE_TAG}.{instance}"],
            **extra,
        }
    )


def verdicts(images: list[Image], servers: list[SelectedEcs] = SERVERS) -> dict[str, tuple[str, str]]:
    rows = plan_coverage(servers, images, now=NOW, max_age=MAX_AGE)
    return {r.server_name: (r.verdict, r.reason) for r in rows}


def test_a_young_active_image_covers_its_ecs_only() -> None:
    result = verdicts([image(1, hours_old=3)])
    assert result["web-1"] == ("covered", "active image younger than 26 h")
    assert result["db-1"] == ("gap", "no image made by imsflow")


def test_the_boundary_exactly_max_age_is_a_gap() -> None:
    just_younger = MAX_AGE.total_seconds() / 3600 - 1 / 3600  # one second younger
    assert verdicts([image(1, hours_old=just_younger)])["web-1"][0] == "covered"
    [row] = plan_coverage(SERVERS[:1], [image(1, hours_old=26)], now=NOW, max_age=MAX_AGE)
    assert (row.verdict, row.reason, row.age) == ("gap", "newest active image not younger than 26 h", "26 h")


def test_the_newest_active_image_decides_and_is_shown() -> None:
    rows = plan_coverage(
        SERVERS[:1],
        [image(1, hours_old=50), image(2, hours_old=5), image(3, hours_old=1, status="saving")],
        now=NOW,
        max_age=MAX_AGE,
    )
    [row] = rows
    assert row.verdict == "covered"
    assert (row.image_name, row.age) == ("img-2", "5 h")


@pytest.mark.parametrize("status", ["killed", "saving", "queued"])
def test_an_image_that_is_not_active_covers_nothing(status: str) -> None:
    rows = plan_coverage(SERVERS[:1], [image(1, hours_old=1, status=status)], now=NOW, max_age=MAX_AGE)
    [row] = rows
    assert row.verdict == "gap"
    assert row.reason == f"no active image (the newest is {status})"
    assert row.image_name == "img-1"  # the newest image is still shown, with its age
    assert row.age == "1 h"


def test_an_old_active_image_with_a_young_killed_one() -> None:
    verdict, reason = verdicts([image(1, hours_old=1, status="killed"), image(2, hours_old=30)])["web-1"]
    assert verdict == "gap"
    assert reason == "newest active image not younger than 26 h"


def test_an_image_of_another_ecs_does_not_cover() -> None:
    result = verdicts([image(1, DB, hours_old=1)], SERVERS[:1])
    assert result["web-1"] == ("gap", "no image made by imsflow")


def test_images_imsflow_did_not_make_are_ignored() -> None:
    by_hand = Image.model_validate(
        {
            "id": "f",
            "name": "golden",
            "status": "active",
            "created_at": NOW.isoformat(),
            # The instance tag alone (no request tag): not imsflow's.
            "tags": [f"{INSTANCE_TAG}.{WEB}"],
        }
    )
    untagged = Image.model_validate({"id": "g", "status": "active", "created_at": NOW.isoformat()})
    assert verdicts([by_hand, untagged])["web-1"] == ("gap", "no image made by imsflow")


def test_a_data_disk_image_alone_does_not_cover() -> None:
    data = image(1, hours_old=1, tags=[f"{REQUEST_TAG}.k", f"{INSTANCE_TAG}.{WEB}", f"{VOLUME_TAG}.v"])
    assert verdicts([data])["web-1"][0] == "gap"


def test_an_image_without_a_creation_time_covers_nothing() -> None:
    undated = Image.model_validate(
        {"id": "u", "name": "u", "status": "active", "tags": [f"{REQUEST_TAG}.k", f"{INSTANCE_TAG}.{WEB}"]}
    )
    assert verdicts([undated])["web-1"] == ("gap", "the newest active image has no creation time")


def test_an_ecs_that_is_not_found_is_a_gap() -> None:
    missing = SelectedEcs(instance_id=WEB, name="?", found=False, error="ECS not found")
    [row] = plan_coverage([missing], [image(1, hours_old=1)], now=NOW, max_age=MAX_AGE)
    assert (row.verdict, row.reason) == ("gap", "no such ECS in the project (ECS not found)")


def test_rows_keep_the_selection_order_and_a_rule_is_required() -> None:
    rows = plan_coverage(list(reversed(SERVERS)), [], now=NOW, max_age=MAX_AGE)
    assert [r.server_name for r in rows] == ["db-1", "web-1"]
    with pytest.raises(ValueError, match="more than zero"):
        plan_coverage(SERVERS, [], now=NOW, max_age=timedelta(0))


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=45), "45 min"),
        (timedelta(hours=26), "26 h"),
        (timedelta(hours=25, minutes=30), "25.5 h"),
        (timedelta(days=3, hours=6), "3.2 d"),
        (timedelta(days=30), "30 d"),
    ],
)
def test_ages_for_people(delta: timedelta, text: str) -> None:
    assert age_text(delta) == text


def test_ages_round_down_so_a_covered_image_never_shows_the_limit() -> None:
    assert age_text(timedelta(hours=26) - timedelta(seconds=1)) == "25.9 h"
    assert age_text(timedelta(seconds=59)) == "0 min"
    assert age_text(timedelta(seconds=-5)) == "0 min"  # the cloud's clock a little ahead of ours
