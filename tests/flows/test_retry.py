"""The retry story of ``runtime/retry.py``, counted on the local cloud: how often a failing call is made, how
long the retries wait (on the cloud's clock), and what is never retried. No test patches a task."""

from __future__ import annotations

from typing import Any

import pytest

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from imsflow.errors import PermissionDeniedError, ServerError
from imsflow.polling import TRANSIENT_TOLERANCE, tolerated_by_wait
from localcloud import LocalCloud
from localcloud.seed import FaultRuleSeed
from runtime.retry import RETRIES, is_testing, set_testing
from tests.support import WEB_1, CloudNetwork, cloud_runtime, make_cloud


def _cloud(*rules: dict[str, Any]) -> tuple[LocalCloud, CloudNetwork]:
    cloud = make_cloud()
    for rule in rules:
        cloud.faults.add(FaultRuleSeed.model_validate(rule))
    return cloud, CloudNetwork(cloud)


def _params(name: str) -> CreateImageParams:
    return CreateImageParams(instance_id=WEB_1, name=name)


def _gap(network: CloudNetwork, method: str, path: str) -> float:
    """Seconds on the cloud's clock from the first refused call to the next one."""
    calls = network.calls_to(method, path)
    assert calls[0].outcome in ("429", "503"), calls
    return (calls[1].at - calls[0].at).total_seconds()


async def test_a_job_status_query_that_keeps_failing_is_made_five_times_in_all() -> None:
    # Every status query answers 503: the wait absorbs 4, the fifth ends it, poll-job is not retried for
    # it and the flow does not retry. Before this story: 9 per wait x 3 poll-job attempts x 2 flow attempts.
    cloud, network = _cloud({"kind": "server_error", "operation": "ims.show_job", "status": 503})
    with cloud_runtime(cloud, network), pytest.raises(ServerError) as raised:
        await create_image_from_ecs(_params("web-1-5xx"))
    assert cloud.stats()["ims.show_job"] == TRANSIENT_TOLERANCE + 1 == RETRIES + 1 == 5
    assert cloud.stats()["ims.create_image"] == 1
    assert tolerated_by_wait(raised.value)


async def test_a_throttled_call_is_retried_after_its_retry_after_on_the_cloud_clock() -> None:
    cloud, network = _cloud(
        {"kind": "throttle_429", "operation": "ims.create_image", "retry_after": 100, "first": 1},
        {"kind": "throttle_429", "operation": "ims.show_job", "retry_after": 45, "first": 1},
    )
    with cloud_runtime(cloud, network):
        result = await create_image_from_ecs(_params("web-1-throttled"))
    assert isinstance(result, CreateImageResult)
    assert _gap(network, "POST", "/v2/cloudimages/action") >= 100  # a task retry
    assert _gap(network, "GET", "/jobs/" + (result.job_id or "")) >= 45  # inside the wait
    assert cloud.stats()["ims.create_image"] == 2


async def test_retry_backoff_sets_the_first_delay_of_a_task_retry() -> None:
    # IMSFLOW_RETRY_BACKOFF: 0.5 s instead of 2 s before the retry, stretched by up to half.
    cloud, network = _cloud(
        {"kind": "server_error", "operation": "ims.create_image", "status": 503, "first": 1}
    )
    with cloud_runtime(cloud, network, retry_backoff=0.5):
        result = await create_image_from_ecs(_params("web-1-backoff"))
    assert isinstance(result, CreateImageResult)
    assert 0.5 <= _gap(network, "POST", "/v2/cloudimages/action") < 1  # 0.5 s stretched by up to half
    assert cloud.stats()["ims.create_image"] == 2


async def test_a_non_transient_error_is_not_retried() -> None:
    cloud, network = _cloud(
        {"kind": "server_error", "operation": "ims.create_image", "status": 403, "error_code": "IMG.0026"}
    )
    with cloud_runtime(cloud, network), pytest.raises(PermissionDeniedError):
        await create_image_from_ecs(_params("web-1-forbidden"))
    assert cloud.stats()["ims.create_image"] == 1


async def test_testing_mode_retries_at_once_and_can_cap_the_attempts() -> None:
    # What users get for tests of their own flows (README, Development): no backoff, no Retry-After wait.
    cloud, network = _cloud(
        {"kind": "throttle_429", "operation": "ims.create_image", "retry_after": 1000, "first": 1}
    )
    assert not is_testing()
    with cloud_runtime(cloud, network), set_testing(True):
        assert is_testing()
        await create_image_from_ecs(_params("web-1-testing"))
    assert not is_testing()
    assert cloud.stats()["ims.create_image"] == 2
    assert _gap(network, "POST", "/v2/cloudimages/action") < 1

    cloud, network = _cloud({"kind": "server_error", "operation": "ims.create_image", "first": 1})
    with cloud_runtime(cloud, network), set_testing(True, attempts=1), pytest.raises(ServerError):
        await create_image_from_ecs(_params("web-1-one-attempt"))
    assert cloud.stats()["ims.create_image"] == 1
