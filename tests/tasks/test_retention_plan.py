"""The retention rules as a pure function: which of imsflow's images go, and why the others stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imsflow.models import Image
from tasks.image import INSTANCE_TAG, REQUEST_TAG, VOLUME_TAG, data_request_key
from tasks.lifecycle import RetentionRule, image_tags, made_by_imsflow, plan_retention

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
WEB = "6f1c2d7e-0000-4000-8000-000000000001"
DB = "6f1c2d7e-0000-4000-8000-000000000002"


def ours(n: int, instance: str = WEB, *, days_old: float, status: str = "active", **extra: object) -> Image:
    return Image.model_validate(
        {
            "id": f"00000000-0000-4000-8000-{instance[-4:]}{n:08d}",
            "name": f"img-{instance[-1]}-{n}",
            "status": status,
            "created_at": (NOW - timedelta(days=days_old)).isoformat(),
            "tags": [f"{REQUEST_TAG}.key{n}", f"{INSTANCE_TAG}.{instance}", "env.prod"],
            **extra,
        }
    )


def decided(decisions: list, action: str) -> set[str]:  # type: ignore[type-arg]
    return {d.name for d in decisions if d.action == action}


def test_tags_parse_both_spellings() -> None:
    image = Image.model_validate(
        {"id": "x", "tags": ["imsflow-request.abc", "imsflow-instance=srv", "lonely"]}
    )
    assert image_tags(image) == {"imsflow-request": "abc", "imsflow-instance": "srv"}
    assert made_by_imsflow(image) == "srv"


def test_keep_newest_per_ecs() -> None:
    images = [ours(n, days_old=n) for n in range(1, 6)] + [ours(n, DB, days_old=n) for n in range(1, 3)]
    plan = plan_retention(images, RetentionRule(keep=2), now=NOW)
    assert decided(plan, "delete") == {"img-1-3", "img-1-4", "img-1-5"}
    assert decided(plan, "keep") == {"img-1-1", "img-1-2", "img-2-1", "img-2-2"}


def test_max_age_alone() -> None:
    images = [ours(n, days_old=d) for n, d in enumerate([1, 10, 29.9, 30.1, 90])]
    plan = plan_retention(images, RetentionRule(max_age=timedelta(days=30)), now=NOW)
    assert decided(plan, "delete") == {"img-1-3", "img-1-4"}


def test_both_rules_delete_only_what_both_let_go() -> None:
    # Newest two are old, but kept by count; the young ones are kept by age whatever their rank.
    images = [ours(1, days_old=40), ours(2, days_old=50), ours(3, days_old=60), ours(4, days_old=70)]
    plan = plan_retention(images, RetentionRule(keep=2, max_age=timedelta(days=30)), now=NOW)
    assert decided(plan, "delete") == {"img-1-3", "img-1-4"}
    young = [ours(n, days_old=n) for n in range(1, 6)]
    plan = plan_retention(young, RetentionRule(keep=2, max_age=timedelta(days=30)), now=NOW)
    assert decided(plan, "delete") == set()


def test_never_images_it_did_not_make() -> None:
    foreign = Image.model_validate(
        {"id": "f", "name": "golden", "status": "active", "created_at": "2020-01-01T00:00:00Z", "tags": []}
    )
    half_tagged = Image.model_validate(
        {"id": "h", "name": "half", "status": "active", "tags": [f"{INSTANCE_TAG}.{WEB}"]}
    )
    plan = plan_retention([foreign, half_tagged, ours(1, days_old=100)], RetentionRule(keep=1), now=NOW)
    assert [d.name for d in plan] == ["img-1-1"]


def test_never_in_use_protected_or_being_created() -> None:
    images = [
        ours(1, days_old=1),
        ours(2, days_old=2, status="saving"),  # being created: not counted among the newest either
        ours(3, days_old=3, status="queued"),
        ours(4, days_old=4),
        ours(5, days_old=5, protected=True),
        ours(6, days_old=6, status="killed"),
    ]
    in_use = frozenset({images[3].id})
    plan = plan_retention(images, RetentionRule(keep=1), now=NOW, in_use=in_use)
    reasons = {d.name: (d.action, d.reason) for d in plan}
    assert reasons["img-1-1"] == ("keep", "newest #1")
    assert reasons["img-1-2"] == ("keep", "still being created")
    assert reasons["img-1-3"] == ("keep", "still being created")
    assert reasons["img-1-4"] == ("keep", "in use by an ECS")
    assert reasons["img-1-5"] == ("keep", "protected")
    assert reasons["img-1-6"] == ("keep", "not active (killed)")
    assert decided(plan, "delete") == set()


def test_a_rule_is_required() -> None:
    with pytest.raises(ValueError, match="keep, max_age or both"):
        plan_retention([], RetentionRule(), now=NOW)


GONE_ECS = "6f1c2d7e-0000-4000-8000-000000000404"


def test_the_last_image_of_a_server_that_is_gone_stays() -> None:
    images = [ours(n, GONE_ECS, days_old=d) for n, d in ((1, 40), (2, 50), (3, 60))] + [
        ours(1, days_old=40)  # web-1 exists: its old image goes as the rule says
    ]
    rule = RetentionRule(max_age=timedelta(days=30))
    plan = plan_retention(images, rule, now=NOW, existing=frozenset({WEB}))
    reasons = {d.name: (d.action, d.reason) for d in plan}
    assert reasons["img-4-1"] == ("keep", "last image of a server that no longer exists")
    assert reasons["img-4-2"][0] == reasons["img-4-3"][0] == "delete"
    assert reasons["img-1-1"] == ("delete", "older than 30 d")

    told = plan_retention(images, rule, now=NOW, existing=frozenset({WEB}), prune_gone_servers=True)
    assert decided(told, "delete") == {"img-4-1", "img-4-2", "img-4-3", "img-1-1"}
    # Not known which servers exist (no census): the rules alone, as before.
    assert decided(plan_retention(images, rule, now=NOW), "delete") == decided(told, "delete")


def test_the_last_image_of_a_gone_server_is_its_newest_active_one() -> None:
    images = [
        ours(1, GONE_ECS, days_old=35, status="killed"),  # a failed image is no copy of the server
        ours(2, GONE_ECS, days_old=40),
        ours(3, GONE_ECS, days_old=50),
    ]
    plan = plan_retention(images, RetentionRule(keep=1), now=NOW, existing=frozenset())
    reasons = {d.name: (d.action, d.reason) for d in plan}
    assert reasons["img-4-1"] == ("keep", "not active (killed)")
    assert reasons["img-4-2"] == ("keep", "last image of a server that no longer exists")
    assert reasons["img-4-3"] == ("delete", "beyond the 1 newest")


def data_of(system: Image, disk: str, *, status: str = "active", **extra: object) -> Image:
    """A data-disk image of ``system``'s set (``--kind system-and-data``), as tasks.image tags it."""
    tags = image_tags(system)
    return Image.model_validate(
        {
            "id": f"{system.id[:-4]}d{disk[-3:]}",
            "name": f"{system.name}-{disk}",
            "status": status,
            "created_at": system.created_at.isoformat() if system.created_at else None,
            "virtual_env_type": "DataImage",
            "tags": [
                f"{REQUEST_TAG}.{data_request_key(tags[REQUEST_TAG])}",
                f"{INSTANCE_TAG}.{tags[INSTANCE_TAG]}",
                f"{VOLUME_TAG}.vol-{disk}",
            ],
            **extra,
        }
    )


def test_a_set_is_kept_or_deleted_whole_and_ranked_as_one() -> None:
    """Three nightly sets (system + two data disks each): keep 2 deletes the oldest set's three images and
    keeps the others; the data images do not count as images of their own."""
    systems = [ours(n, days_old=n) for n in (1, 2, 3)]
    images = [*systems, *(data_of(s, d) for s in systems for d in ("vdb", "vdc"))]
    plan = plan_retention(images, RetentionRule(keep=2), now=NOW)
    assert decided(plan, "delete") == {"img-1-3", "img-1-3-vdb", "img-1-3-vdc"}
    assert decided(plan, "keep") == {f"img-1-{n}{d}" for n in (1, 2) for d in ("", "-vdb", "-vdc")}
    reasons = {d.name: d.reason for d in plan}
    assert reasons["img-1-3-vdb"] == "beyond the 2 newest (data-disk image of img-1-3)"
    assert reasons["img-1-1-vdc"] == "newest #1 (data-disk image of img-1-1)"


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ({"protected": True}, "protected: data-disk image img-1-3-vdb"),
        ({"status": "saving"}, "still being created: data-disk image img-1-3-vdb"),
    ],
)
def test_a_member_that_cannot_go_keeps_the_whole_set(member: dict[str, object], why: str) -> None:
    old = ours(3, days_old=90)
    images = [ours(1, days_old=1), old, data_of(old, "vdb", **member), data_of(old, "vdc")]  # type: ignore[arg-type]
    plan = plan_retention(images, RetentionRule(keep=1), now=NOW)
    assert decided(plan, "delete") == set()
    assert {d.name: d.reason for d in plan}["img-1-3"] == why


def test_data_images_whose_system_image_is_gone_are_a_set_of_their_own() -> None:
    gone = ours(3, days_old=90)  # deleted by hand: only its data images are listed
    images = [ours(1, days_old=1), data_of(gone, "vdb"), data_of(gone, "vdc")]
    plan = plan_retention(images, RetentionRule(keep=1), now=NOW)
    assert decided(plan, "delete") == {"img-1-3-vdb", "img-1-3-vdc"}
    assert decided(plan, "keep") == {"img-1-1"}


def test_a_full_ecs_image_is_one_unit_ranked_with_the_ecs_other_images() -> None:
    """A full-ECS image (``__whole_image``: every disk of the ECS in one image) is a unit of its own, ranked
    among the ECS's images as a system image is: keep 1 keeps the newest, full-ECS or not, and deletes the
    rest whole."""
    whole_new = ours(1, days_old=1, __whole_image=True)
    system_mid = ours(2, days_old=2)
    whole_old = ours(3, days_old=3, __whole_image="true")
    plan = plan_retention([whole_old, system_mid, whole_new], RetentionRule(keep=1), now=NOW)
    assert decided(plan, "keep") == {"img-1-1"}
    assert decided(plan, "delete") == {"img-1-2", "img-1-3"}
    assert {d.reason for d in plan if d.action == "delete"} == {"beyond the 1 newest"}
    assert whole_new.is_whole_image
    assert whole_old.is_whole_image
