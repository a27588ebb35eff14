"""Soak: many create-image runs through random (seeded) faults of every kind; no duplicate, no silent loss.

Every run must end with exactly one active image carrying its request tag, or with a named imsflow error
(and then at most one image for the request). The figures are printed so they can be quoted::

    pytest -m slow tests/flows/test_soak.py -s          # SOAK_RUNS=200 SOAK_SEED=7 for more
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any

import pytest

from flows.create_image import CreateImageParams, CreateImageResult, create_image_from_ecs
from imsflow.errors import ImsflowError
from localcloud import LocalCloud
from localcloud.seed import FaultRuleSeed
from tasks.image import REQUEST_TAG, request_key
from tests.support import CloudNetwork, cloud_runtime, make_cloud

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("SOAK_RUNS", "30"))
SEED = int(os.environ.get("SOAK_SEED", "20261127"))
READ_TIMEOUT = 20.0

# Every kind the local cloud offers, on the operations where it hurts, each with its own probability.
FAULTS: list[dict[str, Any]] = [
    {"kind": "server_error", "operation": "ims.create_image", "status": 503, "probability": 0.1},
    {"kind": "server_error", "operation": "ims.show_job", "probability": 0.08},
    {"kind": "server_error", "operation": "ecs.show_server", "status": 502, "probability": 0.08},
    {"kind": "throttle_429", "operation": "ecs.show_server", "retry_after": 3, "probability": 0.08},
    {"kind": "throttle_429", "operation": "ims.list_images", "retry_after": 2, "probability": 0.08},
    {"kind": "ims_flow_control", "operation": "ims.create_image", "probability": 0.08},
    {"kind": "apig_throttle", "operation": "ims.show_job", "retry_after": 1, "probability": 0.08},
    {"kind": "ecs_flow_limit", "operation": "ecs.stop_servers", "probability": 0.3},
    {"kind": "ecs_flow_limit", "operation": "ecs.start_servers", "probability": 0.3},
    {"kind": "connection_reset", "operation": "ims.create_image", "probability": 0.08},
    {"kind": "connection_reset", "operation": "ims.show_job", "probability": 0.05},
    {"kind": "delay", "operation": "ims.create_image", "seconds": READ_TIMEOUT + 5, "probability": 0.08},
    {"kind": "commit_then_fail", "operation": "ims.create_image", "status": 500, "probability": 0.12},
    {"kind": "commit_then_fail", "operation": "ims.create_image", "mode": "reset", "probability": 0.1},
    {"kind": "job_fail", "operation": "ims.create_image", "error_code": "IMG.0037", "probability": 0.08},
    {"kind": "job_stuck", "operation": "ims.create_image", "probability": 0.04},
    {"kind": "token_revoked", "operation": "ims.show_job", "probability": 0.03},
    {"kind": "token_revoked", "operation": "ecs.show_server", "probability": 0.03},
]


def _server_id(n: int) -> str:
    return f"5e000000-0000-4000-8000-{n:012d}"


def _cloud(rng: random.Random) -> tuple[LocalCloud, list[tuple[str, bool]]]:
    # One ECS per run: a stuck job keeps its ECS busy for good, as in a real cloud.
    servers, plan = [], []
    for n in range(RUNS):
        running = rng.random() < 0.3
        servers.append(
            {
                "id": _server_id(n),
                "name": f"soak-{n}",
                "project": "eu-de",
                "status": "ACTIVE" if running else "SHUTOFF",
            }
        )
        plan.append((_server_id(n), running))
    cloud = make_cloud(servers=servers, random_seed=SEED, limits={"image_quota": RUNS * 2})
    for rule in FAULTS:
        cloud.faults.add(FaultRuleSeed.model_validate(rule))
    return cloud, plan


async def test_soak(capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(SEED)
    cloud, plan = _cloud(rng)
    network = CloudNetwork(cloud)
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    errors: list[str] = []  # named errors: allowed, and printed
    started = time.monotonic()

    async def attempt(n: int, params: CreateImageParams, label: str) -> CreateImageResult | ImsflowError:
        try:
            made = await create_image_from_ecs(params)
        except ImsflowError as exc:
            outcomes[f"{label}error {type(exc).__name__}"] += 1
            errors.append(f"run {n}: {label}{type(exc).__name__}: {exc}")
            return exc
        assert isinstance(made, CreateImageResult)
        outcomes[f"{label}image ({made.how})"] += 1
        return made

    with cloud_runtime(cloud, network, read_timeout=READ_TIMEOUT):
        for n, (instance_id, running) in enumerate(plan):
            params = CreateImageParams(
                instance_id=instance_id, name=f"soak-{n}", stop_if_running=running, timeout_minutes=10
            )
            key = request_key(instance_id, params.name)
            try:
                outcome = await attempt(n, params, "")
                if isinstance(outcome, ImsflowError) and outcome.retryable:
                    # Retries ran out on a transient fault: what an operator does next is run it again.
                    outcome = await attempt(n, params, "re-run: ")
            except Exception as exc:  # anything unnamed is a failure of the test
                problems.append(f"run {n}: unnamed {type(exc).__name__}: {exc}")
                continue
            ours = [i for i in cloud.ims.images.values() if f"{REQUEST_TAG}.{key}" in i.tags]
            if len(ours) > 1:
                problems.append(f"run {n}: {len(ours)} images for one request")
            if isinstance(outcome, CreateImageResult):
                if [(i.id, i.status) for i in ours] != [(outcome.image_id, "active")]:
                    problems.append(f"run {n}: reported {outcome.image_id}, cloud has {ours}")
                if running and cloud.ecs.servers[instance_id].status != "ACTIVE":
                    problems.append(f"run {n}: the ECS imsflow stopped was not started again")

    seconds = time.monotonic() - started
    stats = cloud.stats()
    fired = {k.removeprefix("faults."): v for k, v in sorted(stats.items()) if k.startswith("faults.") and v}
    tags = Counter(t for i in cloud.ims.images.values() for t in i.tags if t.startswith(REQUEST_TAG))
    duplicates = sum(c - 1 for c in tags.values() if c > 1)
    calls = sum(v for k, v in stats.items() if not k.startswith("faults."))
    with capsys.disabled():
        print(f"\nsoak: {RUNS} runs (seed {SEED}) in {seconds:.1f} s, {calls} API calls")
        print(f"  faults fired: {sum(fired.values())} {dict(fired)}")
        print(f"  outcomes: {dict(sorted(outcomes.items()))}")
        print(*(f"  {e}" for e in errors), sep="\n")
        images, posts = len(cloud.ims.images), stats["ims.create_image"]
        print(f"  images: {images}; duplicates: {duplicates}; create POSTs: {posts}")

    assert problems == []
    assert duplicates == 0
    assert sum(v for k, v in outcomes.items() if not k.startswith("re-run")) == RUNS
    assert sum(v for k, v in outcomes.items() if "image" in k) >= RUNS // 2
    assert len(fired) >= 8, "the soak must meet most fault kinds"
