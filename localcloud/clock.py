"""One injectable clock for the whole local cloud.

Every time-dependent answer (token expiry, job and server lifecycles, signature skew, rate limits) reads
``clock.now()``; nothing progresses in the background. Tests use :class:`ManualClock` and ``advance()``.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What the local cloud needs from a clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` in this clock's time (used by the ``delay`` fault)."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


DEFAULT_START = datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC)


class ManualClock:
    """A clock that only moves when told to.

    ``sleep`` advances the clock instead of waiting, so a ``delay`` fault costs no real time in tests
    (the answer arrives "later" as far as the cloud is concerned).
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or DEFAULT_START
        if start.tzinfo is None:
            # A naive start is taken as UTC rather than rejected: seeds and tests write plain datetimes.
            start = start.replace(tzinfo=UTC)
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` (must not be negative); returns the new time."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (not earlier than now)."""
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        with self._lock:
            if when < self._now:
                raise ValueError("a ManualClock only moves forward")
            self._now = when.astimezone(UTC)

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        # Still yield to the event loop, as a real sleep would.
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


# ---- timestamp formats used by the APIs --------------------------------------------------------------


def fmt_seconds(t: datetime) -> str:
    """``2018-09-13T07:06:51Z`` (ECS servers, IMS images)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_millis(t: datetime) -> str:
    """``2016-04-25T20:04:34.604Z`` (ECS and IMS jobs)."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def fmt_micros(t: datetime) -> str:
    """``2015-11-09T01:42:57.527363Z`` (IAM tokens)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fmt_sdk_date(t: datetime) -> str:
    """``20191115T033655Z`` (X-Sdk-Date)."""
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
