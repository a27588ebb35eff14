"""Fault rules: make the local cloud misbehave the ways the real one does, on purpose and reproducibly.

A rule matches an operation name (as in the stats, e.g. ``ims.create_image``) and/or an HTTP method and a
path glob (``/ims/v2/cloudimages*``), and fires on the first N matching calls (``first``), on exactly the
Nth (``nth``), with a probability drawn from a seeded ``random.Random`` (``probability``), or on every
matching call when none of these is given. ``times`` caps how often a rule fires.
"""

from __future__ import annotations

import fnmatch
import random
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from localcloud.seed import FaultKind, FaultRuleSeed

# Kinds that answer instead of the operation (the operation is not applied).
RESPONDING_KINDS: tuple[FaultKind, ...] = (
    "server_error",
    "throttle_429",
    "ims_flow_control",
    "apig_throttle",
    "ecs_flow_limit",
)
# Kinds that shape the job the operation creates.
JOB_KINDS: tuple[FaultKind, ...] = ("job_fail", "job_stuck")


@dataclass
class JobFault:
    """How a fault rule bends a job that is about to be created."""

    fail: bool = False
    stuck: bool = False
    error_code: str | None = None
    fail_reason: str | None = None


class ConnectionDropped(httpx.RemoteProtocolError):
    """The server hung up without answering.

    Under uvicorn the connection is aborted and no response is written. Over ``httpx.ASGITransport`` this
    exception reaches the client instead; it subclasses ``httpx.RemoteProtocolError`` on purpose, so code
    under test sees the same exception family as with a real dropped connection ("Server disconnected
    without sending a response").
    """

    def __init__(
        self, message: str = "Server disconnected without sending a response (localcloud fault)"
    ) -> None:
        super().__init__(message)


@dataclass
class FaultRule:
    spec: FaultRuleSeed
    id: str
    matched: int = 0
    fired: int = 0

    def matches(self, operation: str, method: str, path: str) -> bool:
        s = self.spec
        if s.operation is not None and s.operation != operation:
            return False
        if s.method is not None and s.method.upper() != method.upper():
            return False
        return s.path is None or fnmatch.fnmatchcase(path, s.path)

    def as_dict(self) -> dict[str, Any]:
        data = self.spec.model_dump(exclude_none=True)
        data.update(id=self.id, matched=self.matched, fired=self.fired)
        return data


class FaultEngine:
    """The active fault rules and the seeded RNG they draw from."""

    def __init__(self, rules: list[FaultRuleSeed], random_seed: int) -> None:
        self._rng = random.Random(random_seed)
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []
        for spec in rules:
            self.add(spec)

    def add(self, spec: FaultRuleSeed) -> FaultRule:
        with self._lock:
            rule_id = spec.id or f"fault-{secrets.token_hex(4)}"
            if any(r.id == rule_id for r in self.rules):
                raise ValueError(f"a fault rule with id {rule_id!r} exists already")
            rule = FaultRule(spec, rule_id)
            self.rules.append(rule)
            return rule

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self.rules)
            self.rules = [r for r in self.rules if r.id != rule_id]
            return len(self.rules) != before

    def clear(self) -> None:
        with self._lock:
            self.rules = []

    def evaluate(self, operation: str, method: str, path: str) -> list[FaultRule]:
        """Count this call against every matching rule; return the rules that fire, in rule order."""
        fired: list[FaultRule] = []
        with self._lock:
            for rule in self.rules:
                if not rule.matches(operation, method, path):
                    continue
                rule.matched += 1
                if self._fires(rule):
                    rule.fired += 1
                    fired.append(rule)
        return fired

    def _fires(self, rule: FaultRule) -> bool:
        s = rule.spec
        if s.times is not None and rule.fired >= s.times:
            return False
        if s.first is not None and rule.matched > s.first:
            return False
        if s.nth is not None and rule.matched != s.nth:
            return False
        # The draw happens only for calls the other conditions let through, so a seed gives one sequence.
        return s.probability is None or self._rng.random() < s.probability
