"""The fault matrix: every fault kind the local cloud offers, against the whole create-image flow.

Each case runs the flow on the local cloud's clock (no sleeping: the retry backoff, too, goes through the
runtime's sleep) and ends with exactly one active image carrying the request's tag, or with the named error
and no image made twice. The network shim (``tests.support.CloudNetwork``) turns dropped connections and
answers later than the client's read timeout into the httpx errors a real socket gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from imsflow.errors import EcsNotReadyError, ImsflowError, JobFailedError, JobTimeoutError
from localcloud import LocalCloud
from localcloud.seed import FaultRuleSeed
from tasks.image import REQUEST_TAG, request_key
from tests.support import DB_1, WEB_1, CloudNetwork, cloud_runtime, make_cloud

#: Many flow runs per test: the full run (CI), not the quick loop.
pytestmark = pytest.mark.slow

READ_TIMEOUT = 20.0  # seconds on the cloud's clock; the delay case waits longer than this


@dataclass
class Outcome:
    cloud: LocalCloud
    network: CloudNetwork
    params: CreateImageParams
    result: CreateImageResult | None = None
    error: ImsflowError | None = None

    def stat(self, name: str) -> int:
        return int(self.cloud.stats().get(name, 0))


@dataclass
class Case:
    id: str
    rules: list[dict[str, Any]]
    instance_id: str = WEB_1
    stop_if_running: bool = False
    timeout_minutes: int = 30
    error: type[ImsflowError] | None = None
    image_despite_error: bool = False  # the error came after the image was made
    check: Callable[[Outcome], None] = field(default=lambda _o: None)


def _created_once(o: Outcome) -> None:
    assert o.stat("ims.create_image") == 1, "the retry must adopt the applied request, not post it again"
    assert o.result is not None
    assert o.result.how == "adopted"


def _posted_twice(o: Outcome) -> None:
    # The first POST was refused or lost before the cloud applied it: posting again is the only way.
    assert o.stat("ims.create_image") == 2
    assert o.result is not None
    assert o.result.how == "submitted"


def _posted_once(o: Outcome) -> None:
    assert o.stat("ims.create_image") == 1
    assert o.result is not None
    assert o.result.how == "submitted"


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


def _all(*checks: Callable[[Outcome], None]) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        for one in checks:
            one(o)

    return check


def _retry_after_honoured(method: str, path: str, seconds: float) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        calls = o.network.calls_to(method, path)
        assert [c.outcome for c in calls[:2]] == ["429", "200"], calls
        waited = (calls[1].at - calls[0].at).total_seconds()
        assert waited >= seconds, f"retried {waited:.1f} s after a Retry-After of {seconds} s"

    return check


def _stopped_and_restarted(o: Outcome) -> None:
    assert o.stat("ecs.stop_servers") == 2  # the first stop was not applied (Common.0024 on 202)
    assert o.stat("ecs.start_servers") == 1
    assert o.cloud.ecs.servers[DB_1].status == "ACTIVE"


def _job_failed(o: Outcome) -> None:
    assert isinstance(o.error, JobFailedError)
    assert o.error.error_code == "IMG.0037"
    assert o.error.fail_reason == "disk snapshot failed"
    assert o.stat("ims.create_image") == 1, "a failed job is reported, not submitted again"


def _job_timed_out(o: Outcome) -> None:
    assert isinstance(o.error, JobTimeoutError)
    assert o.error.last_status == "RUNNING"
    assert "RUNNING" in str(o.error)
    assert o.stat("ims.create_image") == 1


def _adopted_image_stuck(o: Outcome) -> None:
    assert isinstance(o.error, JobTimeoutError)
    assert o.error.last_status in ("queued", "saving")
    assert o.stat("ims.create_image") == 1


def _restarted_after_a_retry_found_it_stopped(o: Outcome) -> None:
    # The stop was issued, then the wait for it was throttled long enough for the ECS to finish stopping:
    # the retried check finds it SHUTOFF, and must still know that imsflow stopped it.
    assert o.stat("ecs.stop_servers") == 1
    assert o.stat("ecs.start_servers") == 1
    assert o.cloud.ecs.servers[DB_1].status == "ACTIVE"


def _left_stopped_while_the_job_runs(o: Outcome) -> None:
    _job_timed_out(o)
    assert o.stat("ecs.start_servers") == 0, "IMS needs the ECS stopped until its job ends"
    assert o.cloud.ecs.servers[DB_1].status == "SHUTOFF"


def _started_again_after_the_failed_job(o: Outcome) -> None:
    _job_failed(o)
    assert o.stat("ecs.start_servers") == 1
    assert o.cloud.ecs.servers[DB_1].status == "ACTIVE"


def _refused_start_named_at_once(o: Outcome) -> None:
    assert isinstance(o.error, EcsNotReadyError)
    assert "the start of ECS db-1" in str(o.error)
    assert "Ecs.0226" in str(o.error)
    # One start: the flow does not retry (runtime/retry.py), and the image is not made again.
    assert o.stat("ecs.start_servers") == 1
    assert o.stat("ims.create_image") == 1
    # Named as soon as the ECS job failed, not after the 600 s the wait would allow.
    starts = o.network.calls_to("POST", "/cloudservers/action")
    assert (o.network.calls[-1].at - starts[-1].at).total_seconds() < 60


def _one_token_refresh(o: Outcome) -> None:
    assert o.stat("faults.token_revoked") == 1
    assert o.stat("iam.create_token") == 2, "one login, then exactly one refresh after the 401"
    assert [c.outcome for c in o.network.calls if c.outcome == "401"] == ["401"]


CASES = [
    Case(
        "server_error-create",
        [{"kind": "server_error", "operation": "ims.create_image", "status": 503, "first": 1}],
        check=_posted_twice,
    ),
    Case(
        "server_error-poll",
        [{"kind": "server_error", "operation": "ims.show_job", "status": 500, "first": 2}],
        check=_posted_once,
    ),
    Case(
        "throttle_429-ecs",
        [{"kind": "throttle_429", "operation": "ecs.show_server", "retry_after": 7, "first": 1}],
        check=_retry_after_honoured("GET", f"/cloudservers/{WEB_1}", 7),
    ),
    Case(
        "throttle_429-create",
        [{"kind": "throttle_429", "operation": "ims.create_image", "retry_after": 12, "first": 1}],
        check=_all(_posted_twice, _retry_after_honoured("POST", "/v2/cloudimages/action", 12)),
    ),
    Case(
        "ims_flow_control",
        [{"kind": "ims_flow_control", "operation": "ims.create_image", "first": 2}],
        check=lambda o: _assert_equal(o.stat("ims.create_image"), 3),
    ),
    Case(
        "apig_throttle",
        [{"kind": "apig_throttle", "operation": "ims.list_images", "retry_after": 4, "first": 1}],
        check=_retry_after_honoured("GET", "/v2/cloudimages", 4),
    ),
    Case(
        "ecs_flow_limit",
        [{"kind": "ecs_flow_limit", "operation": "ecs.stop_servers", "first": 1}],
        instance_id=DB_1,
        stop_if_running=True,
        check=_stopped_and_restarted,
    ),
    Case(
        "connection_reset-create",
        [{"kind": "connection_reset", "operation": "ims.create_image", "first": 1}],
        check=_posted_twice,
    ),
    Case(
        "connection_reset-poll",
        [{"kind": "connection_reset", "operation": "ims.show_job", "first": 1}],
        check=_posted_once,
    ),
    Case(
        "delay-past-read-timeout",
        [{"kind": "delay", "operation": "ims.create_image", "seconds": READ_TIMEOUT + 10, "first": 1}],
        check=_all(
            _created_once,
            lambda o: _assert_equal(o.network.calls_to("POST", "/action")[0].outcome, "timeout"),
        ),
    ),
    Case(
        "commit_then_fail-5xx",
        [{"kind": "commit_then_fail", "operation": "ims.create_image", "status": 502, "first": 1}],
        check=_created_once,
    ),
    Case(
        "commit_then_fail-reset",
        [{"kind": "commit_then_fail", "operation": "ims.create_image", "mode": "reset", "first": 1}],
        check=_created_once,
    ),
    Case(
        "job_fail",
        [
            {
                "kind": "job_fail",
                "operation": "ims.create_image",
                "error_code": "IMG.0037",
                "fail_reason": "disk snapshot failed",
            }
        ],
        error=JobFailedError,
        check=_job_failed,
    ),
    Case(
        "job_stuck",
        [{"kind": "job_stuck", "operation": "ims.create_image"}],
        timeout_minutes=5,
        error=JobTimeoutError,
        check=_job_timed_out,
    ),
    Case(
        "job_stuck-adopted",
        [
            {"kind": "job_stuck", "operation": "ims.create_image"},
            {"kind": "commit_then_fail", "operation": "ims.create_image", "mode": "reset", "first": 1},
        ],
        timeout_minutes=5,
        error=JobTimeoutError,
        check=_adopted_image_stuck,
    ),
    Case(
        "throttle_429-while-stopping",
        [{"kind": "throttle_429", "operation": "ecs.show_server", "retry_after": 60, "nth": 2}],
        instance_id=DB_1,
        stop_if_running=True,
        check=_restarted_after_a_retry_found_it_stopped,
    ),
    Case(
        "job_stuck-stopped-by-us",
        [{"kind": "job_stuck", "operation": "ims.create_image"}],
        instance_id=DB_1,
        stop_if_running=True,
        timeout_minutes=5,
        error=JobTimeoutError,
        check=_left_stopped_while_the_job_runs,
    ),
    Case(
        "job_fail-stopped-by-us",
        [
            {
                "kind": "job_fail",
                "operation": "ims.create_image",
                "error_code": "IMG.0037",
                "fail_reason": "disk snapshot failed",
            }
        ],
        instance_id=DB_1,
        stop_if_running=True,
        error=JobFailedError,
        check=_started_again_after_the_failed_job,
    ),
    Case(
        "job_fail-start",
        [{"kind": "job_fail", "operation": "ecs.start_servers", "error_code": "Ecs.0226"}],
        instance_id=DB_1,
        stop_if_running=True,
        error=EcsNotReadyError,
        image_despite_error=True,
        check=_refused_start_named_at_once,
    ),
    Case(
        "token_revoked-check",
        [{"kind": "token_revoked", "operation": "ecs.show_server", "first": 1}],
        check=_one_token_refresh,
    ),
    Case(
        "token_revoked-poll",
        [{"kind": "token_revoked", "operation": "ims.show_job", "nth": 2}],
        check=_one_token_refresh,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_fault(case: Case) -> None:
    cloud = make_cloud()
    for rule in case.rules:
        cloud.faults.add(FaultRuleSeed.model_validate(rule))
    network = CloudNetwork(cloud)
    params = CreateImageParams(
        instance_id=case.instance_id,
        name=f"img-{case.id}",
        stop_if_running=case.stop_if_running,
        timeout_minutes=case.timeout_minutes,
    )
    outcome = Outcome(cloud, network, params)
    with cloud_runtime(cloud, network, read_timeout=READ_TIMEOUT):
        if case.error is None:
            made = await create_image_from_ecs(params)
            assert isinstance(made, CreateImageResult)
            outcome.result = made
        else:
            with pytest.raises(case.error) as raised:
                await create_image_from_ecs(params)
            outcome.error = raised.value

    fired = {k: v for k, v in cloud.stats().items() if k.startswith("faults.")}
    assert sum(fired.values()) >= 1, "the fault never fired: the case tests nothing"
    tagged = [
        i
        for i in cloud.ims.images.values()
        if f"{REQUEST_TAG}.{request_key(params.instance_id, params.name)}" in i.tags
    ]
    assert len(tagged) <= 1, f"{len(tagged)} images for one request"
    if case.error is None:
        assert outcome.result is not None
        assert [i.id for i in tagged] == [outcome.result.image_id]
        assert tagged[0].status == "active"
        assert len(cloud.ims.images) == 1
    elif case.image_despite_error:
        assert [i.status for i in tagged] == ["active"]
    else:
        assert all(i.status != "active" for i in tagged)
    case.check(outcome)
