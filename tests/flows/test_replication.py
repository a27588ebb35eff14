"""replicate-image on Prefect's test harness, against the in-process local cloud (its virtual clock): the
copy is made, encrypted or moved, tagged as imsflow's; refused before the copy call for a full-ECS or ISO
image; and made exactly once whatever moment a crash hits.

Crash points as in test_data_disks.py: the process dies (a ``BaseException``: nothing after that moment
runs) at a chosen request, before it left or after the cloud applied it (its answer lost with the process);
the same request then runs again on the same result storage and must end with exactly one copy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from flows.replication import ReplicateImageParams, ReplicateResult, replicate_image
from imsflow.errors import ImageNotFoundError, InvalidRequestError, JobFailedError, JobTimeoutError
from imsflow.models import Image as ClientImage
from localcloud import LocalCloud, ManualClock, Seed
from localcloud.ims.state import Image
from localcloud.seed import FaultRuleSeed
from runtime.records import SUBMISSIONS
from tasks.image import INSTANCE_TAG, REQUEST_TAG
from tasks.lifecycle import made_by_imsflow
from tasks.replication import SOURCE_TAG, copy_request_key, marker
from tests.support import (
    PROJECT_ID,
    WEB_1,
    CloudNetwork,
    DiesAt,
    Killed,
    Matcher,
    cloud_runtime,
    crash_after,
    crash_at,
    job_query,
    seed_data,
)

GOLDEN = "d164b5df-1bc3-4c3f-893e-3e471fd16e64"
CMK = "bd66288c-9081-460a-8227-4cbd0c814cb4"
EPS = "b3a1f4a2-7c1e-4a5e-9d3b-2f6c8e0a1b2c"
PARAMS = ReplicateImageParams(image_id=GOLDEN, name="golden-encrypted", description="for prod", cmk_id=CMK)


def make_cloud() -> LocalCloud:
    """A golden image imsflow made from web-1 (its two tags)."""
    golden = {
        "id": GOLDEN,
        "name": "golden",
        "project": PROJECT_ID,
        "tags": [f"{REQUEST_TAG}.0123456789abcdef0123456789abcdef", f"{INSTANCE_TAG}.{WEB_1}"],
    }
    data = seed_data(images=[golden])
    return LocalCloud(seed=Seed.model_validate(data), clock=ManualClock(datetime.now(UTC)))


async def replicate(cloud: LocalCloud, params: ReplicateImageParams = PARAMS) -> ReplicateResult:
    with cloud_runtime(cloud):
        result = await replicate_image(params)
    assert isinstance(result, ReplicateResult)
    return result


def copies(cloud: LocalCloud) -> list[Image]:
    return [i for i in cloud.ims.images.values() if i.copied_from == GOLDEN]


def tags(image: Image) -> dict[str, str]:
    return dict(tag.split(".", 1) for tag in image.tags)


def posts(cloud: LocalCloud) -> int:
    return cloud.stats()["ims.copy_image"]


def assert_one_copy(
    cloud: LocalCloud, result: ReplicateResult, params: ReplicateImageParams = PARAMS
) -> None:
    made = copies(cloud)
    assert [(i.id, i.status) for i in made] == [(result.image_id, "active")]
    copy = made[0]
    key = copy_request_key(GOLDEN, params.name, params.cmk_id, params.enterprise_project_id)
    assert copy.name == params.name
    assert copy.cmk_id == params.cmk_id
    assert copy.description == f"{params.description} {marker(key)}" if params.description else marker(key)
    assert tags(copy) == {REQUEST_TAG: key, SOURCE_TAG: GOLDEN, INSTANCE_TAG: WEB_1}
    assert posts(cloud) == 1, "one copy call in all"


async def test_an_encrypted_copy_is_made_tagged_and_seen_as_imsflows() -> None:
    cloud = make_cloud()
    result = await replicate(cloud)
    assert_one_copy(cloud, result)
    assert result.how == "submitted"
    assert result.job_id is not None
    assert result.cmk_id == CMK
    assert result.source_id == GOLDEN
    body = cloud.ims.images[result.image_id]
    assert body.enterprise_project_id == "0"
    # Retention, coverage and prune see it as an image imsflow made of web-1.
    seen = ClientImage.model_validate({"id": body.id, "tags": body.tags})
    assert made_by_imsflow(seen) == WEB_1
    # Once more: the same copy, no second call.
    again = await replicate(cloud)
    assert again.image_id == result.image_id
    assert again.how == "resumed"
    assert_one_copy(cloud, result)


async def test_a_copy_into_an_enterprise_project() -> None:
    cloud = make_cloud()
    params = ReplicateImageParams(image_id=GOLDEN, name="golden-eps", enterprise_project_id=EPS)
    result = await replicate(cloud, params)
    assert_one_copy(cloud, result, params)
    assert cloud.ims.images[result.image_id].enterprise_project_id == EPS
    assert cloud.ims.images[result.image_id].cmk_id is None


@pytest.mark.parametrize(
    ("attribute", "value", "why"),
    [("whole_image", True, "full-ECS image"), ("virtual_env_type", "IsoImage", "ISO file")],
)
async def test_full_ecs_and_iso_images_are_refused_before_the_copy_call(
    attribute: str, value: object, why: str
) -> None:
    cloud = make_cloud()
    setattr(cloud.ims.images[GOLDEN], attribute, value)
    with pytest.raises(InvalidRequestError, match=why) as info:
        await replicate(cloud)
    assert "cannot be replicated" in str(info.value)
    assert posts(cloud) == 0
    assert copies(cloud) == []


async def test_an_unknown_image_is_not_found() -> None:
    cloud = make_cloud()
    params = ReplicateImageParams(image_id="465076de-dc36-4aec-80f5-ef9d8009428f", name="x")
    with pytest.raises(ImageNotFoundError):
        await replicate(cloud, params)
    assert posts(cloud) == 0


def test_the_form_checks_the_pages_rules() -> None:
    for kwargs, field in [
        ({"name": "bad/name"}, "name"),
        ({"name": "ok", "cmk_id": "my-key"}, "cmk_id"),
        ({"name": "ok", "enterprise_project_id": "marketing"}, "enterprise_project_id"),
        ({"name": "ok", "description": "a <b>"}, "description"),
        ({"name": "ok", "description": "x" * 1000}, "description"),  # the marker needs room
    ]:
        with pytest.raises(ValueError, match=field):
            ReplicateImageParams(image_id=GOLDEN, **kwargs)
    # Empty form fields are not set.
    params = ReplicateImageParams(
        image_id=GOLDEN, name="ok", description="", cmk_id="", enterprise_project_id=""
    )
    assert params.to_request().to_body() == {"name": "ok"}
    schema = ReplicateImageParams.model_json_schema()
    assert schema["title"] == "Replication"
    for field in ("image_id", "name", "description", "cmk_id", "enterprise_project_id", "timeout_minutes"):
        assert schema["properties"][field].get("description"), field
        assert "anyOf" not in schema["properties"][field], field


def _copy_post(r: httpx.Request) -> bool:
    return r.method == "POST" and r.url.path.endswith("/copy")


def _tags_post(r: httpx.Request) -> bool:
    return r.method == "POST" and r.url.path.endswith("/tags/action")


# (the moment, applied, copies there after the crash, how the re-run finds the copy)
CRASHES = [
    pytest.param(crash_at(_copy_post), False, 0, "submitted", id="before-the-post"),
    pytest.param(crash_at(_copy_post), True, 1, "adopted", id="post-applied-answer-lost"),
    pytest.param(crash_after(_copy_post, job_query), True, 1, "resumed", id="while-the-job-runs"),
    pytest.param(crash_at(_tags_post), False, 1, "resumed", id="after-the-job-before-the-tags"),
    pytest.param(crash_at(_tags_post), True, 1, "resumed", id="after-the-tags"),
]


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
@pytest.mark.parametrize(("moment", "applied", "there", "how"), CRASHES)
async def test_a_rerun_after_a_crash_ends_with_exactly_one_copy(
    moment: Callable[[], Matcher], applied: bool, there: int, how: str
) -> None:
    cloud = make_cloud()
    network = DiesAt(cloud, moment(), applied=applied)
    with cloud_runtime(cloud, network), pytest.raises(Killed):
        await replicate_image(PARAMS)
    assert network.fired
    assert len(copies(cloud)) == there

    result = await replicate(cloud)

    assert_one_copy(cloud, result)
    assert result.how == how
    assert (await replicate(cloud)).image_id == result.image_id
    assert len(copies(cloud)) == 1


@pytest.mark.parametrize("tagged", [False, True], ids=["marked-only", "tagged"])
async def test_a_lost_record_still_finds_the_copy(tagged: bool) -> None:
    """The record is gone (other result storage, cleaned up) and the copy's job has ended meanwhile: the tag,
    else the description's marker, finds the copy."""
    cloud = make_cloud()
    if tagged:
        await replicate(cloud)
    else:
        network = DiesAt(cloud, _copy_post, applied=True)
        with cloud_runtime(cloud, network), pytest.raises(Killed):
            await replicate_image(PARAMS)
    cloud.advance(60)
    await SUBMISSIONS.delete(copy_request_key(GOLDEN, PARAMS.name, CMK))
    result = await replicate(cloud)
    assert_one_copy(cloud, result)
    assert result.how == "adopted"


async def test_an_image_of_the_same_name_without_the_marker_is_not_taken() -> None:
    cloud = make_cloud()
    other = ReplicateImageParams(image_id=GOLDEN, name=PARAMS.name, description="for prod")  # no key
    first = await replicate(cloud, other)
    second = await replicate(cloud)
    assert first.image_id != second.image_id
    assert posts(cloud) == 2


async def test_a_failed_copy_job_fails_the_run_and_a_new_run_copies_again() -> None:
    cloud = make_cloud()
    cloud.faults.add(FaultRuleSeed(kind="job_fail", operation="ims.copy_image", first=1))
    with cloud_runtime(cloud), pytest.raises(JobFailedError):
        await replicate_image(PARAMS)
    assert [i.status for i in copies(cloud)] == ["killed"]
    result = await replicate(cloud)
    assert result.how == "submitted"
    assert sorted(i.status for i in copies(cloud)) == ["active", "killed"]


# ------------------------------------------------------------ the fault matrix, for the copy and tag calls

READ_TIMEOUT = 20.0  # seconds on the cloud's clock; the delay case waits longer than this
COPY, TAGS = "ims.copy_image", "ims.update_image_tags"


def rule(kind: str, operation: str = COPY, **fields: object) -> list[dict[str, object]]:
    return [{"kind": kind, "operation": operation, **fields}]


# (id, fault rules, copy calls in all, how the copy was found, the error the run ends with)
FAULTS: list[tuple[str, list[dict[str, object]], int, str, type[Exception] | None]] = [
    # Refused or lost before the cloud applied it: posting again is the only way (and finds nothing first).
    ("server_error-copy", rule("server_error", status=503, first=1), 2, "submitted", None),
    ("throttle_429-copy", rule("throttle_429", retry_after=12, first=1), 2, "submitted", None),
    ("ims_flow_control-copy", rule("ims_flow_control", first=2), 3, "submitted", None),
    ("connection_reset-copy", rule("connection_reset", first=1), 2, "submitted", None),
    ("token_revoked-copy", rule("token_revoked", first=1), 2, "submitted", None),  # refused with a 401
    # Applied, the answer lost: the retry finds the copy by its description's marker.
    ("commit_then_fail-5xx-copy", rule("commit_then_fail", status=502, first=1), 1, "adopted", None),
    ("commit_then_fail-reset-copy", rule("commit_then_fail", mode="reset", first=1), 1, "adopted", None),
    ("delay-past-read-timeout-copy", rule("delay", seconds=READ_TIMEOUT + 10, first=1), 1, "adopted", None),
    # The tag call: idempotent, so retried as it is.
    ("server_error-tags", rule("server_error", TAGS, status=500, first=2), 1, "submitted", None),
    ("commit_then_fail-tags", rule("commit_then_fail", TAGS, mode="reset", first=1), 1, "submitted", None),
    # The job: a failure is reported (not posted again), a stuck job times out.
    ("job_fail-copy", rule("job_fail", error_code="IMG.0037", fail_reason="no"), 1, "", JobFailedError),
    ("job_stuck-copy", rule("job_stuck"), 1, "", JobTimeoutError),
]


@pytest.mark.slow  # many flow runs (crash points, faults, a fleet): the full run, not the quick loop
@pytest.mark.parametrize(
    ("rules", "calls", "how", "error"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
async def test_fault(
    rules: list[dict[str, object]], calls: int, how: str, error: type[Exception] | None
) -> None:
    cloud = make_cloud()
    for rule in rules:
        cloud.faults.add(FaultRuleSeed.model_validate(rule))
    params = PARAMS.model_copy(update={"timeout_minutes": 5})
    with cloud_runtime(cloud, CloudNetwork(cloud), read_timeout=READ_TIMEOUT):
        if error is None:
            result = await replicate_image(params)
        else:
            with pytest.raises(error):
                await replicate_image(params)
    assert sum(v for k, v in cloud.stats().items() if k.startswith("faults.")) >= 1, "the fault never fired"
    assert posts(cloud) == calls
    assert len(copies(cloud)) == 1, "one copy, whatever happened"
    if error is None:
        assert isinstance(result, ReplicateResult)
        assert result.how == how
        copy = copies(cloud)[0]
        assert (copy.id, copy.status) == (result.image_id, "active")
        assert tags(copy)[REQUEST_TAG] == copy_request_key(GOLDEN, PARAMS.name, CMK)
    else:
        assert copies(cloud)[0].status != "active"
