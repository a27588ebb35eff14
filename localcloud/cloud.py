"""LocalCloud: the services, the clock, the counters and the fault rules, wired together. No HTTP here.

The HTTP side (``app.py``, ``gateway.py`` and each service's ``wire.py``) is built from a cloud on demand,
by :attr:`LocalCloud.app` or by whoever serves it (``build_app(cloud)``); nothing in it imports this module.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from functools import cached_property
from typing import TYPE_CHECKING, Any

from localcloud.clock import Clock, ManualClock, SystemClock
from localcloud.ecs.state import Ecs, ImageJobsByServer
from localcloud.errors import CloudError, gateway_error
from localcloud.faults import FaultEngine
from localcloud.iam.state import Iam
from localcloud.ims.state import Ims
from localcloud.seed import Distribution, Duration, Seed, demo_seed

if TYPE_CHECKING:
    from starlette.types import ASGIApp

# Every operation the local cloud counts, so /_local/stats always lists them (zeros included).
OPERATIONS: tuple[str, ...] = (
    "iam.create_token",
    "iam.verify_token",
    "iam.list_projects",
    "ecs.show_server",
    "ecs.list_servers",
    "ecs.stop_servers",
    "ecs.start_servers",
    "ecs.show_job",
    "ims.create_image",
    "ims.show_job",
    "ims.show_job_progress",
    "ims.list_images",
    "ims.show_image",
    "ims.delete_image",
    "ims.export_image",
    "ims.show_quota",
    "ims.add_members",
    "ims.delete_members",
    "ims.update_members",
    "ims.list_members",
    "ims.copy_image",
    "ims.update_image_tags",
    "ims.create_whole_image",
)


class LocalCloud:
    """An emulated IAM + ECS + IMS (+ the OBS buckets IMS exports into) behind one ASGI app.

    ``cloud.iam``, ``cloud.ecs`` and ``cloud.ims`` are rebuilt by :meth:`reset`; do not keep references
    to them across a reset.
    """

    def __init__(self, seed: Seed | None = None, clock: Clock | None = None) -> None:
        self.seed: Seed = seed if seed is not None else demo_seed()
        self.clock: Clock = clock if clock is not None else SystemClock()
        # One lock around every state change: the app may run in a uvicorn thread while a test inspects.
        self.lock = threading.RLock()
        self._build()

    def _build(self) -> None:
        seed = self.seed
        self.rng = random.Random(seed.random_seed)
        self.iam = Iam(seed, self.clock)
        # Links between the services are passed in: ECS and IMS share who is imaging which server,
        # IMS looks servers up in ECS, both draw durations from the cloud's seeded RNG.
        image_jobs = ImageJobsByServer(self.clock)
        self.ecs = Ecs(
            seed, self.clock, self.iam.resolve_project, durations=self.duration, image_jobs=image_jobs
        )
        self.ims = Ims(
            seed,
            self.clock,
            self.iam.resolve_project,
            servers=self.ecs,
            image_jobs=image_jobs,
            durations=self.duration,
        )
        self.faults = FaultEngine(seed.faults, seed.random_seed)
        self._stats: Counter[str] = Counter()
        self._rate_window: int | None = None
        self._rate_count = 0

    @cached_property
    def app(self) -> ASGIApp:
        """The ASGI app serving this cloud, built on first use and kept (it survives :meth:`reset`)."""
        from localcloud.app import build_app  # lazy: a cloud used without HTTP never loads FastAPI

        return build_app(self)

    # ---- public helpers --------------------------------------------------------------------------------

    @property
    def obs(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The emulated OBS buckets: ``{bucket: {file: metadata}}`` (finished exports included)."""
        with self.lock:
            return self.ims.obs

    def stats(self) -> dict[str, int]:
        """Call counts per operation (``service.operation``) and fired faults (``faults.<kind>``)."""
        with self.lock:
            counts = dict.fromkeys(OPERATIONS, 0)
            counts.update(self._stats)
            return counts

    def count(self, name: str) -> None:
        with self.lock:
            self._stats[name] += 1

    def reset(self) -> None:
        """Back to the seed state; counters zero, fault rules as seeded. The clock is left as it is."""
        with self.lock:
            self._build()

    def advance(self, seconds: float) -> None:
        """Advance a ManualClock (convenience for tests and demos)."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("only a ManualClock can be advanced")
        self.clock.advance(seconds)

    def duration(self, value: Duration) -> float:
        """A plain number, or a draw from ``{mean, spread}`` with the seeded RNG."""
        if isinstance(value, Distribution):
            with self.lock:
                return max(0.0, self.rng.uniform(value.mean - value.spread, value.mean + value.spread))
        return float(value)

    def check_rate(self) -> CloudError | None:
        """``limits.requests_per_second``: a fixed one-second window on the cloud's clock."""
        limit = self.seed.limits.requests_per_second
        if limit is None:
            return None
        with self.lock:
            window = int(self.clock.now().timestamp())
            if window != self._rate_window:
                self._rate_window, self._rate_count = window, 0
            self._rate_count += 1
            if self._rate_count <= limit:
                return None
        self.count("faults.rate_limit")
        return gateway_error(
            "APIG.0308",
            "The throttling threshold has been reached: "
            f"policy user over ratelimit,limit:{limit:g},time:1 second",
            429,
            {"Retry-After": "1"},
        )
