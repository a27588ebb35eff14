"""share-image and accept-image on Prefect's test harness, against the in-process local cloud: the owner
shares, the receiving project accepts with its own credentials block, the image is in its list; unsharing
takes it out; refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from flows.sharing import AcceptImageParams, ShareImageParams, accept_image, share_image
from imsflow.errors import ImageNotFoundError, ImageNotShareableError, ProjectNotFoundError
from localcloud import LocalCloud, ManualClock, Seed
from localcloud.ims.state import ImageFilters
from localcloud.seed import FaultRuleSeed
from runtime.credentials import ImsflowCredentials
from tests.support import PASSWORD, PROJECT_ID, WEB_1, CloudNetwork, cloud_runtime, endpoints, seed_data

RECEIVER = "edc89b490d7d4392898e19b2deb34797"
THIRD = "9c61004714024f9586705d090530f9fa"
GOLDEN = "d164b5df-1bc3-4c3f-893e-3e471fd16e64"
BLOCK = "sharing-receiver"


def make_cloud() -> LocalCloud:
    data = seed_data(images=[{"id": GOLDEN, "name": "golden", "project": PROJECT_ID}])
    data["domains"] += [
        {
            "name": "partner",
            "users": [{"name": "bob", "password": PASSWORD}],
            "projects": [{"id": RECEIVER, "name": "eu-de"}],
        },
        {
            "name": "third",
            "users": [{"name": "carol", "password": PASSWORD}],
            "projects": [{"id": THIRD, "name": "eu-de"}],
        },
    ]
    return LocalCloud(seed=Seed.model_validate(data), clock=ManualClock(datetime.now(UTC)))


async def receiver_block() -> str:
    await ImsflowCredentials(
        profile="local", **endpoints(), domain="partner", username="bob", password=PASSWORD
    ).asave(BLOCK, overwrite=True)
    return BLOCK


def listed(cloud: LocalCloud, project: str) -> list[str]:
    return [i.id for i in cloud.ims.list_images(project, ImageFilters())]


async def test_share_accept_then_the_receiver_lists_it_and_unshare_takes_it_away() -> None:
    cloud = make_cloud()
    block = await receiver_block()
    with cloud_runtime(cloud):
        shared = await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER, THIRD]))
        assert shared.changed == [RECEIVER, THIRD]
        assert shared.job_id
        assert GOLDEN not in listed(cloud, RECEIVER), "pending: not in the list yet"

        accepted = await accept_image(AcceptImageParams(image_ids=[GOLDEN]), credentials_block=block)
        assert (accepted.project_id, accepted.status) == (RECEIVER, "accepted")
        assert GOLDEN in listed(cloud, RECEIVER)
        assert GOLDEN not in listed(cloud, THIRD), "the third project has not accepted"
        assert cloud.ims.images[GOLDEN].members[RECEIVER].status == "accepted"

        removed = await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER], remove=True))
        assert removed.changed == [RECEIVER]
    assert GOLDEN not in listed(cloud, RECEIVER)
    assert set(cloud.ims.images[GOLDEN].members) == {THIRD}


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
async def test_sharing_again_changes_nothing() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud):
        await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER]))
        again = await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER, THIRD]))
        assert (again.changed, again.unchanged) == ([THIRD], [RECEIVER])
        nothing = await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER]))
        assert (nothing.changed, nothing.job_id) == ([], None)
        gone = await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER, THIRD], remove=True))
        not_member = await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER], remove=True))
    assert gone.changed == [RECEIVER, THIRD]
    assert not_member.job_id is None
    assert cloud.stats()["ims.add_members"] == 2
    assert cloud.stats()["ims.delete_members"] == 1


async def test_a_reject_keeps_the_image_out_of_the_list() -> None:
    cloud = make_cloud()
    block = await receiver_block()
    with cloud_runtime(cloud):
        await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER]))
        result = await accept_image(
            AcceptImageParams(image_ids=[GOLDEN], status="rejected"), credentials_block=block
        )
    assert result.status == "rejected"
    assert GOLDEN not in listed(cloud, RECEIVER)
    assert cloud.ims.images[GOLDEN].members[RECEIVER].status == "rejected"


async def test_sharing_with_yourself_is_refused() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud), pytest.raises(ImageNotShareableError, match=r"IMG\.0076"):
        await share_image(ShareImageParams(image_id=GOLDEN, projects=[PROJECT_ID]))


async def test_an_unknown_project_or_image_is_refused() -> None:
    cloud = make_cloud()
    with cloud_runtime(cloud), pytest.raises(ProjectNotFoundError, match=r"IMG\.0108"):
        await share_image(ShareImageParams(image_id=GOLDEN, projects=["f" * 32]))
    with cloud_runtime(cloud), pytest.raises(ImageNotFoundError):
        await share_image(ShareImageParams(image_id="0" * 8 + GOLDEN[8:], projects=[RECEIVER]))


async def test_accepting_an_image_not_shared_with_you_fails() -> None:
    cloud = make_cloud()
    block = await receiver_block()
    # Refused at once (not a failed job): IMG.0027 "The image ID in the request does not exist."
    with cloud_runtime(cloud), pytest.raises(ImageNotFoundError, match=r"IMG\.0027"):
        await accept_image(AcceptImageParams(image_ids=[GOLDEN]), credentials_block=block)


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
async def test_a_golden_image_is_shared_once_it_is_active() -> None:
    cloud = make_cloud()
    block = await receiver_block()
    with cloud_runtime(cloud):
        made = await create_image_from_ecs(
            CreateImageParams(instance_id=WEB_1, name="golden-web-1", share_with=[RECEIVER])
        )
        assert isinstance(made, CreateImageResult)
        assert made.shared_with == [RECEIVER]
        assert cloud.ims.images[made.image_id].members[RECEIVER].status == "pending"
        await accept_image(AcceptImageParams(image_ids=[made.image_id]), credentials_block=block)
    assert made.image_id in listed(cloud, RECEIVER)


@pytest.mark.slow  # many flow runs: the full run, not the quick loop
async def test_a_shared_image_is_still_the_owners_for_prune_and_coverage() -> None:
    """Shared, the owner's image is ``__imagetype`` shared, not private; retention and coverage still count it
    (and never the images others share with this project: ``owner`` tells them apart)."""
    from flows.coverage import CoverageParams, check_image_coverage
    from flows.lifecycle import PruneParams, prune_images

    cloud = make_cloud()
    with cloud_runtime(cloud):
        made = await create_image_from_ecs(
            CreateImageParams(instance_id=WEB_1, name="golden-web-1", share_with=[RECEIVER])
        )
        assert isinstance(made, CreateImageResult)
        covered = await check_image_coverage(CoverageParams(instance_ids=[WEB_1], max_age="1w"))
        pruned = await prune_images(
            PruneParams(instance_ids=[WEB_1], keep=1, max_age_days=None, dry_run=True)
        )
    assert [r.verdict for r in covered.rows] == ["covered"]
    assert [(d.image_id, d.action) for d in pruned.kept] == [(made.image_id, "keep")]


# ------------------------------------------------------------ the fault matrix, for the sharing calls

ADD, REMOVE, UPDATE, MEMBERS = (
    "ims.add_members",
    "ims.delete_members",
    "ims.update_members",
    "ims.list_members",
)


def _rule(kind: str, operation: str, **fields: object) -> dict[str, object]:
    return {"kind": kind, "operation": operation, **fields}


def _faults_fired(cloud: LocalCloud) -> int:
    return sum(v for k, v in cloud.stats().items() if k.startswith("faults."))


# (id, fault rule, the step it hits: share | accept)
SHARING_FAULTS: list[tuple[str, dict[str, object], str]] = [
    ("server_error-add", _rule("server_error", ADD, status=503, first=1), "share"),
    ("throttle_429-add", _rule("throttle_429", ADD, retry_after=5, first=1), "share"),
    ("connection_reset-add", _rule("connection_reset", ADD, first=1), "share"),
    ("commit_then_fail-add", _rule("commit_then_fail", ADD, status=502, first=1), "share"),
    ("server_error-list", _rule("server_error", MEMBERS, status=500, first=1), "share"),
    ("apig_throttle-list", _rule("apig_throttle", MEMBERS, retry_after=2, first=1), "share"),
    ("server_error-update", _rule("server_error", UPDATE, status=503, first=1), "accept"),
    ("commit_then_fail-update", _rule("commit_then_fail", UPDATE, mode="reset", first=1), "accept"),
    ("token_revoked-update", _rule("token_revoked", UPDATE, first=1), "accept"),
]


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
@pytest.mark.parametrize(
    ("rule", "step"), [f[1:] for f in SHARING_FAULTS], ids=[f[0] for f in SHARING_FAULTS]
)
async def test_sharing_fault(rule: dict[str, object], step: str) -> None:
    """Whatever fault hits a sharing call, share and accept end as asked: the receiver a member once, its
    answer recorded, the image in its list."""
    cloud = make_cloud()
    block = await receiver_block()
    cloud.faults.add(FaultRuleSeed.model_validate(rule))
    with cloud_runtime(cloud, CloudNetwork(cloud), read_timeout=20.0):
        shared = await share_image(ShareImageParams(image_id=GOLDEN, projects=[RECEIVER]))
        fired_in_share = _faults_fired(cloud)
        accepted = await accept_image(AcceptImageParams(image_ids=[GOLDEN]), credentials_block=block)
    fired_in_accept = _faults_fired(cloud) - fired_in_share
    fired = {"share": fired_in_share, "accept": fired_in_accept}
    assert fired[step] >= 1, f"the fault never fired in {step}: {fired}"
    assert sum(fired.values()) == fired[step], f"the fault fired outside {step}: {fired}"
    assert shared.changed == [RECEIVER]
    assert (accepted.project_id, accepted.status) == (RECEIVER, "accepted")
    assert list(cloud.ims.images[GOLDEN].members) == [RECEIVER]
    assert cloud.ims.images[GOLDEN].members[RECEIVER].status == "accepted"
    assert GOLDEN in listed(cloud, RECEIVER)
