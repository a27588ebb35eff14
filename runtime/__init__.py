"""What the tasks share: settings, the client factory, the clock, and step reports.

Everything here is process-wide and has a production default. Tests swap in the local cloud's in-process
transport and its manual clock with :func:`use_runtime`, so flows run for real through Prefect without
sockets or sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

import httpx

from imsflow import polling
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


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, interval: float = 2.0
) -> None:
    """:func:`imsflow.polling.wait_until` on this runtime's clock and sleep (virtual in tests)."""
    await polling.wait_until(
        check, timeout=timeout, interval=interval, clock=_current.clock, sleep=_current.sleep, what=what
    )


def report(step: str, message: str) -> None:
    """Tell interested front ends (the CLI's step display) that a step finished."""
    for reporter in _current.reporters:
        reporter(step, message)


__all__ = [
    "ENVIRONMENT",
    "Runtime",
    "SettingsSource",
    "current",
    "report",
    "settings",
    "settings_source",
    "use_runtime",
]
