"""Soak: many create-image runs of every image kind through random (seeded) faults; no duplicate, no loss.

The runs take the kinds in turn (``system``, ``system-and-data``, ``full-ecs``), one ECS each. Every run must
end with its images (a system image; a set: the system image and one image per data disk; a full-ECS image),
each exactly once, active and carrying its request's tag, or with a named imsflow error (and then at most one
image per member of the request). The figures are printed per kind so they can be quoted::

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
from imsflow.validation import ImageKind
from localcloud import LocalCloud
from localcloud.ims.state import Image
from localcloud.seed import FaultRuleSeed
from tasks.image import REQUEST_TAG, VOLUME_TAG, data_request_key, request_key
from tests.support import CloudNetwork, cloud_runtime, make_cloud

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("SOAK_RUNS", "30"))
SEED = int(os.environ.get("SOAK_SEED", "20261127"))
READ_TIMEOUT = 20.0
KINDS: tuple[ImageKind, ...] = ("system", "system-and-data", "full-ecs")
VAULT = "3c2b1a09-0000-4000-8000-0000000000b1"
POWER_OPS = ("ecs.stop_servers", "ecs.start_servers")

# The faults of an image-creating POST: ims.create_image (a system image, and a set's two requests) and
# ims.create_whole_image (a full-ECS image) meet the same ones.
CREATE_FAULTS: list[dict[str, Any]] = [
    {"kind": "server_error", "status": 503, "probability": 0.1},
    {"kind": "ims_flow_control", "probability": 0.08},
    {"kind": "connection_reset", "probability": 0.08},
    {"kind": "delay", "seconds": READ_TIMEOUT + 5, "probability": 0.08},
    {"kind": "commit_then_fail", "status": 500, "probability": 0.12},
    {"kind": "commit_then_fail", "mode": "reset", "probability": 0.1},
    {"kind": "job_fail", "error_code": "IMG.0037", "probability": 0.08},
    {"kind": "job_stuck", "probability": 0.04},
]
# Every kind the local cloud offers, on the operations where it hurts, each with its own probability.
FAULTS: list[dict[str, Any]] = [
    *(
        {**rule, "operation": op}
        for op in ("ims.create_image", "ims.create_whole_image")
        for rule in CREATE_FAULTS
    ),
    {"kind": "server_error", "operation": "ims.show_job", "probability": 0.08},
    {"kind": "server_error", "operation": "ecs.show_server", "status": 502, "probability": 0.08},
    {"kind": "throttle_429", "operation": "ecs.show_server", "retry_after": 3, "probability": 0.08},
    {"kind": "throttle_429", "operation": "ims.list_images", "retry_after": 2, "probability": 0.08},
    {"kind": "apig_throttle", "operation": "ims.show_job", "retry_after": 1, "probability": 0.08},
    {"kind": "ecs_flow_limit", "operation": "ecs.stop_servers", "probability": 0.3},
    {"kind": "ecs_flow_limit", "operation": "ecs.start_servers", "probability": 0.3},
    {"kind": "connection_reset", "operation": "ims.show_job", "probability": 0.05},
    {"kind": "token_revoked", "operation": "ims.show_job", "probability": 0.03},
    {"kind": "token_revoked", "operation": "ecs.show_server", "probability": 0.03},
]


def _server_id(n: int) -> str:
    return f"5e000000-0000-4000-8000-{n:012d}"


def _cloud(rng: random.Random) -> tuple[LocalCloud, list[tuple[str, bool, ImageKind]]]:
    # One ECS per run: a stuck job keeps its ECS busy for good, as in a real cloud. A set's or a full-ECS
    # image's ECS has one or two data disks.
    servers, plan = [], []
    for n in range(RUNS):
        kind = KINDS[n % len(KINDS)]
        running = rng.random() < 0.3
        disks = 0 if kind == "system" else rng.randint(1, 2)
        servers.append(
            {
                "id": _server_id(n),
                "name": f"soak-{n}",
                "project": "eu-de",
                "status": "ACTIVE" if running else "SHUTOFF",
                "data_disks": disks,
            }
        )
        plan.append((_server_id(n), running, kind))
    cloud = make_cloud(
        servers=servers,
        vaults=[{"id": VAULT, "name": "soak-backups", "project": "eu-de"}],
        random_seed=SEED,
        limits={"image_quota": RUNS * 4},
    )
    for rule in FAULTS:
        cloud.faults.add(FaultRuleSeed.model_validate(rule))
    return cloud, plan


def _tagged(cloud: LocalCloud, key: str) -> list[Image]:
    return [i for i in cloud.ims.images.values() if f"{REQUEST_TAG}.{key}" in i.tags]


def _volume(image: Image) -> str | None:
    return next((t.split(".", 1)[1] for t in image.tags if t.startswith(f"{VOLUME_TAG}.")), None)


def _check(
    cloud: LocalCloud, n: int, kind: ImageKind, instance_id: str, outcome: CreateImageResult | ImsflowError
) -> list[str]:
    """What is wrong with run ``n``'s images: a member made twice, or (the run made its images) the images
    reported not exactly the request's, each once and active."""
    problems: list[str] = []
    name = f"soak-{n}"
    key = request_key(instance_id, name, kind=kind)
    ours = _tagged(cloud, key)
    if len(ours) > 1:
        problems.append(f"run {n} ({kind}): {len(ours)} images for one request")
    data: list[Image] = []
    if kind == "system-and-data":
        data = _tagged(cloud, data_request_key(key))
        volumes = Counter(_volume(i) for i in data)
        if any(c > 1 for c in volumes.values()):
            problems.append(f"run {n} ({kind}): a data disk imaged twice: {dict(volumes)}")
    if not isinstance(outcome, CreateImageResult):
        return problems
    if [(i.id, i.status) for i in ours] != [(outcome.image_id, "active")]:
        problems.append(f"run {n} ({kind}): reported {outcome.image_id}, cloud has {ours}")
    if kind == "system-and-data":
        disks = sorted(v.id for v in cloud.ecs.servers[instance_id].data_volumes)
        made = sorted((i.id, _volume(i), i.status) for i in data)
        reported = sorted((d.image_id, d.volume_id, "active") for d in outcome.data_images)
        if made != reported or sorted(v or "" for _, v, _ in made) != disks:
            problems.append(f"run {n} ({kind}): reported {reported}, cloud has {made}, data disks {disks}")
        if sorted(outcome.image_ids) != sorted(i.id for i in [*ours, *data]):
            problems.append(f"run {n} ({kind}): image_ids {outcome.image_ids} are not the set's")
    if kind == "full-ecs" and not all(i.whole_image for i in ours):
        problems.append(f"run {n} ({kind}): the image is not a full-ECS image")
    return problems


async def test_soak(capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(SEED)
    cloud, plan = _cloud(rng)
    network = CloudNetwork(cloud)
    outcomes: dict[ImageKind, Counter[str]] = {kind: Counter() for kind in KINDS}
    problems: list[str] = []
    errors: list[str] = []  # named errors: allowed, and printed
    started = time.monotonic()

    async def attempt(
        n: int, kind: ImageKind, params: CreateImageParams, label: str
    ) -> CreateImageResult | ImsflowError:
        try:
            made = await create_image_from_ecs(params)
        except ImsflowError as exc:
            outcomes[kind][f"{label}error {type(exc).__name__}"] += 1
            errors.append(f"run {n} ({kind}): {label}{type(exc).__name__}: {exc}")
            return exc
        assert isinstance(made, CreateImageResult)
        outcomes[kind][f"{label}image ({made.how})"] += 1
        return made

    with cloud_runtime(cloud, network, read_timeout=READ_TIMEOUT):
        for n, (instance_id, running, kind) in enumerate(plan):
            params = CreateImageParams(
                instance_id=instance_id,
                name=f"soak-{n}",
                kind=kind,
                vault_id=VAULT if kind == "full-ecs" else None,
                stop_if_running=running,
                timeout_minutes=10,
            )
            stats = cloud.stats()
            power_before = sum(stats.get(op, 0) for op in POWER_OPS)
            try:
                outcome = await attempt(n, kind, params, "")
                if isinstance(outcome, ImsflowError) and outcome.retryable:
                    # Retries ran out on a transient fault: what an operator does next is run it again.
                    outcome = await attempt(n, kind, params, "re-run: ")
            except Exception as exc:  # anything unnamed is a failure of the test
                problems.append(f"run {n} ({kind}): unnamed {type(exc).__name__}: {exc}")
                continue
            problems += _check(cloud, n, kind, instance_id, outcome)
            status = cloud.ecs.servers[instance_id].status
            if kind == "full-ecs":
                stats = cloud.stats()
                if sum(stats.get(op, 0) for op in POWER_OPS) != power_before:
                    problems.append(f"run {n} ({kind}): the ECS was stopped or started")
                if status != ("ACTIVE" if running else "SHUTOFF"):
                    problems.append(f"run {n} ({kind}): the ECS went from running={running} to {status}")
            elif isinstance(outcome, CreateImageResult) and running and status != "ACTIVE":
                problems.append(f"run {n} ({kind}): the ECS imsflow stopped was not started again")

    seconds = time.monotonic() - started
    stats = cloud.stats()
    fired = {k.removeprefix("faults."): v for k, v in sorted(stats.items()) if k.startswith("faults.") and v}
    # A set's data images share their request's tag: one image per (request, data disk).
    members = Counter(
        (t, _volume(i)) for i in cloud.ims.images.values() for t in i.tags if t.startswith(REQUEST_TAG)
    )
    duplicates = sum(c - 1 for c in members.values() if c > 1)
    calls = sum(v for k, v in stats.items() if not k.startswith("faults."))
    made = {k: sum(v for o, v in c.items() if "image" in o) for k, c in outcomes.items()}
    with capsys.disabled():
        print(f"\nsoak: {RUNS} runs (seed {SEED}) in {seconds:.1f} s, {calls} API calls")
        print(f"  faults fired: {sum(fired.values())} {dict(fired)}")
        whole = Counter[str]()
        for rule in cloud.faults.rules:
            if rule.spec.operation == "ims.create_whole_image" and rule.fired:
                whole[rule.spec.kind] += rule.fired
        print(f"  of them on ims.create_whole_image: {dict(sorted(whole.items()))}")
        for kind, counts in outcomes.items():
            runs = sum(v for o, v in counts.items() if not o.startswith("re-run"))
            print(f"  {kind}: {runs} runs, {made[kind]} made their images; {dict(sorted(counts.items()))}")
        print(*(f"  {e}" for e in errors), sep="\n")
        images = Counter(
            "full-ecs" if i.whole_image else "data" if i.virtual_env_type == "DataImage" else "system"
            for i in cloud.ims.images.values()
        )
        posts = {op: stats.get(op, 0) for op in ("ims.create_image", "ims.create_whole_image")}
        print(f"  images: {len(cloud.ims.images)} {dict(images)}; duplicates: {duplicates}; POSTs: {posts}")

    assert problems == []
    assert duplicates == 0
    assert sum(v for c in outcomes.values() for k, v in c.items() if not k.startswith("re-run")) == RUNS
    assert sum(made.values()) >= RUNS // 2
    assert all(made.values()), "every kind must make its images at least once"
    assert len(fired) >= 8, "the soak must meet most fault kinds"
