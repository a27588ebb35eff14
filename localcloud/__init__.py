"""localcloud: a local emulator of the IAM, ECS and IMS HTTP APIs (Open Telekom Cloud / Huawei Cloud).

Written from the API pages alone; it never imports ``imsflow``. One port serves all three services,
told apart by a path prefix: ``/iam/v3/...``, ``/ecs/v1/...``, ``/ims/v2/...`` and ``/ims/v1/...``.
"""

from __future__ import annotations

from localcloud.clock import Clock, ManualClock, SystemClock
from localcloud.cloud import OPERATIONS, LocalCloud
from localcloud.errors import CloudError
from localcloud.faults import ConnectionDropped
from localcloud.seed import DEMO_SEED_PATH, Seed, demo_seed, load_seed, parse_seed

__all__ = [
    "DEMO_SEED_PATH",
    "OPERATIONS",
    "Clock",
    "CloudError",
    "ConnectionDropped",
    "LocalCloud",
    "ManualClock",
    "Seed",
    "SystemClock",
    "demo_seed",
    "load_seed",
    "parse_seed",
]
