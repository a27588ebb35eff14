"""Declared lifecycles: a lifecycle is data, a sequence of phases with durations.

The state of a job, an image or a server is *computed* from the clock and the phase table whenever it is
looked at, so nothing runs in the background and tests advance a ManualClock instead of sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

ProgressProfile = Literal["linear", "stepped"]


@dataclass(frozen=True)
class Phase:
    """One phase; ``seconds=None`` means it lasts forever (a terminal phase, or a stuck job)."""

    name: str
    seconds: float | None

    def __post_init__(self) -> None:
        if self.seconds is not None and self.seconds < 0:
            raise ValueError(f"phase {self.name!r} has a negative duration")


@dataclass(frozen=True)
class Position:
    """Where a lifecycle stands at some instant."""

    phase: Phase
    index: int
    entered_at: datetime
    elapsed_in_phase: float

    @property
    def name(self) -> str:
        return self.phase.name

    @property
    def fraction(self) -> float:
        """How far through the current phase, 0.0 to 1.0 (0.0 for an endless phase)."""
        if self.phase.seconds is None:
            return 0.0
        if self.phase.seconds == 0:
            return 1.0
        return min(1.0, self.elapsed_in_phase / self.phase.seconds)


@dataclass(frozen=True)
class Lifecycle:
    """An ordered tuple of phases. The last phase should be endless (``seconds=None``)."""

    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("a lifecycle needs at least one phase")
        for phase in self.phases[:-1]:
            if phase.seconds is None:
                # Allowed (a stuck job): later phases are simply never reached.
                break

    @classmethod
    def of(cls, *phases: tuple[str, float | None]) -> Lifecycle:
        return cls(tuple(Phase(name, seconds) for name, seconds in phases))

    def offset_of(self, index: int) -> float | None:
        """Seconds from the start until phase ``index`` begins (None if it is never reached)."""
        total = 0.0
        for phase in self.phases[:index]:
            if phase.seconds is None:
                return None
            total += phase.seconds
        return total

    def index_of(self, name: str) -> int:
        for i, phase in enumerate(self.phases):
            if phase.name == name:
                return i
        raise KeyError(name)

    def at(self, started_at: datetime, now: datetime) -> Position:
        """The phase in force at ``now`` for a lifecycle that began at ``started_at``."""
        elapsed = max(0.0, (now - started_at).total_seconds())
        offset = 0.0
        for i, phase in enumerate(self.phases):
            last = i == len(self.phases) - 1
            if phase.seconds is None or last or elapsed < offset + phase.seconds:
                return Position(phase, i, started_at + timedelta(seconds=offset), elapsed - offset)
            offset += phase.seconds
        raise AssertionError("unreachable")  # pragma: no cover

    def entered_at(self, started_at: datetime, name: str) -> datetime | None:
        """When phase ``name`` begins (None if never)."""
        offset = self.offset_of(self.index_of(name))
        return None if offset is None else started_at + timedelta(seconds=offset)


@dataclass(frozen=True)
class Timeline:
    """A lifecycle anchored at a start time."""

    lifecycle: Lifecycle
    started_at: datetime

    def at(self, now: datetime) -> Position:
        return self.lifecycle.at(self.started_at, now)

    def entered_at(self, name: str) -> datetime | None:
        return self.lifecycle.entered_at(self.started_at, name)

    def reached(self, name: str, now: datetime) -> bool:
        when = self.entered_at(name)
        return when is not None and when <= now

    def status(self, now: datetime) -> str:
        """The job status: the name of the phase it is in."""
        return self.at(now).name

    def end_time(self, now: datetime) -> datetime | None:
        """When a job timeline reached SUCCESS or FAIL (None while it runs)."""
        pos = self.at(now)
        return pos.entered_at if pos.name in ("SUCCESS", "FAIL") else None


def progress_percent(fraction: float, profile: ProgressProfile = "linear", steps: int = 4) -> float:
    """Map a phase fraction (0..1) onto a progress value in percent (0..100).

    ``linear`` grows smoothly; ``stepped`` jumps in ``steps`` equal stairs, as real backends that report
    progress per copy chunk do.
    """
    fraction = min(1.0, max(0.0, fraction))
    if profile == "stepped":
        fraction = math.floor(fraction * steps) / steps
    return round(fraction * 100.0, 1)
