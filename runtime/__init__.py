"""What the steps and flows run on: settings, the transport, the clock, and step reports.

Everything here is process-wide and has a production default. Tests swap in the local cloud's in-process
transport and its manual clock with :func:`use_runtime`, so flows run for real through Prefect without
sockets or sleeping.

The package's modules hold the rest of the plumbing (none of them is imported by ``import runtime``, which
loads no Prefect): ``retry`` (the retry story), ``auth`` (login, token scope, a client for a task),
``secure`` (encryption at rest), ``records`` (typed records in result storage), ``locking``, ``budget``
(global limits), ``credentials`` (the block) and ``events``.

**Process-wide caches, and one reset.** A long-lived process keeps, on purpose:

* the settings read from the environment (:func:`settings` without :func:`use_runtime`), read once;
* ``runtime.auth``: the token that replaced a dead one (by fingerprint), and the project ID looked up for
  an AK/SK;
* ``runtime.secure``: the Fernet object per result key;
* ``runtime.retry``: the test mode of :func:`runtime.retry.set_testing`.

:func:`reset` forgets all of them and puts back the default runtime: what a test fixture calls so that no
test depends on the ones before it, and what a host calls after changing ``IMSFLOW_*`` in-process.
(Secrets registered for log redaction, ``imsflow.redact``, are never forgotten.)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

import httpx

from imsflow import polling
from imsflow.polling import J
from imsflow.settings import ImsflowSettings

Reporter = Callable[[str, str], None]


@dataclass(frozen=True)
class SettingsSource:
    """Where the settings' credentials came from, so that an error can say what to fix (never a secret)."""

    label: str  # "credentials block 'otc-prod'"
    remedy: str  # what to do when IAM refuses them


#: The default: ``ImsflowSettings()`` reads ``IMSFLOW_*`` from the environment and ``.env``.
ENVIRONMENT = SettingsSource(
    label="IMSFLOW_USERNAME/IMSFLOW_PASSWORD from the environment / .env",
    remedy="fix IMSFLOW_PASSWORD (or IMSFLOW_USERNAME / IMSFLOW_DOMAIN) in the environment or .env "
    "of the process that runs the flow, then run again",
)


@lru_cache(maxsize=1)
def _default_settings() -> ImsflowSettings:
    return ImsflowSettings()


@dataclass(frozen=True)
class Runtime:
    """The process-wide knobs the tasks read."""

    settings_factory: Callable[[], ImsflowSettings] = _default_settings
    #: Where ``settings_factory``'s credentials come from; whoever replaces the factory says so here.
    settings_source: SettingsSource = ENVIRONMENT
    transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    reporters: tuple[Reporter, ...] = ()


_current = Runtime()


def current() -> Runtime:
    return _current


def settings() -> ImsflowSettings:
    return _current.settings_factory()


def settings_source() -> SettingsSource:
    return _current.settings_source


@contextlib.contextmanager
def use_runtime(**changes: object) -> Iterator[Runtime]:
    """Temporarily replace parts of the runtime (tests, ``imsflow demo``)."""
    global _current
    previous = _current
    _current = replace(previous, **changes)  # type: ignore[arg-type]
    try:
        yield _current
    finally:
        _current = previous


_resets: list[Callable[[], None]] = []


def on_reset(forget: Callable[[], None]) -> Callable[[], None]:
    """Register what a module of the package forgets on :func:`reset` (at its import: a module that was
    never imported has nothing to forget). Returns ``forget``, so it works as a decorator."""
    _resets.append(forget)
    return forget


def reset() -> None:
    """Forget every process-wide cache of the runtime (listed in the module) and put back the defaults."""
    global _current
    _default_settings.cache_clear()
    _current = Runtime()
    for forget in _resets:
        forget()


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, interval: float = 2.0
) -> None:
    """:func:`imsflow.polling.wait_until` on this runtime's clock and sleep (virtual in tests), backing off
    from the settings' ``retry_backoff`` after a transient error."""
    await polling.wait_until(
        check,
        timeout=timeout,
        interval=interval,
        clock=_current.clock,
        sleep=_current.sleep,
        what=what,
        backoff=settings().retry_backoff,
    )


async def wait_for_job(
    fetch: Callable[[], Awaitable[J]],
    *,
    job_id: str,
    timeout: float,
    policy: polling.PollPolicy | None = None,
    on_update: Callable[[J, float], Awaitable[None]] | None = None,
    percent_of: Callable[[J], float | None] = lambda _job: None,
) -> J:
    """:func:`imsflow.polling.wait_for_job` on this runtime's clock and sleep (virtual in tests)."""
    return await polling.wait_for_job(
        fetch,
        job_id=job_id,
        timeout=timeout,
        policy=policy,
        clock=_current.clock,
        sleep=_current.sleep,
        on_update=on_update,
        percent_of=percent_of,
    )


def report(step: str, message: str) -> None:
    """Tell interested front ends (the CLI's step display) what a step did, and the run's log.

    Inside a Prefect flow or task run the line also goes to the run's logger (INFO), so the run's logs in
    the UI tell the same story as ``imsflow demo``; the CLI quiets Prefect's console, so it shows each line
    once. Prefect is imported here only when something loaded it already (``import runtime`` loads none).
    """
    for reporter in _current.reporters:
        reporter(step, message)
    _log_in_run(step, message)


def _log_in_run(step: str, message: str) -> None:
    if "prefect" not in sys.modules:  # nothing loaded Prefect: there is no run to log in
        return
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.logging import get_run_logger

    task_run = TaskRunContext.get()
    if task_run is None and FlowRunContext.get() is None:
        return
    if (task_run is not None and task_run.task.name == step) or ":" in step:
        # The task run's name says the step already; a flow's display event ("fleet:done") says itself.
        get_run_logger().info("%s", message)
    else:
        get_run_logger().info("%s: %s", step, message)


__all__ = [
    "ENVIRONMENT",
    "Runtime",
    "SettingsSource",
    "current",
    "on_reset",
    "report",
    "reset",
    "settings",
    "settings_source",
    "use_runtime",
    "wait_for_job",
    "wait_until",
]
