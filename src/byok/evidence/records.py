"""Evidence records: what one guide step did, what it observed, and its verdict.

A record holds only non-secret values: key ids, request ids, states, fingerprints,
attribute tables, lengths and hashes. Secrets and key material never enter a record;
where a value must be identifiable, its SHA-256 is recorded instead.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PASSED = "passed"
FAILED = "failed"
BLOCKED = "blocked"
INFORMATIONAL = "informational"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass
class StepRecord:
    """Evidence of one step of the procedure."""

    step: str
    guide_section: str
    inputs: dict[str, Any] = field(default_factory=dict)
    observations: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = PASSED
    started: str = field(default_factory=utc_now)
    finished: str | None = None
    duration_ms: float | None = None
    _clock: float = field(default_factory=time.perf_counter, repr=False)

    def observe(self, name: str, value: Any) -> None:
        self.observations[name] = value

    def check(self, name: str, expected: Any, actual: Any) -> bool:
        """Record one comparison of an expected and an observed value; return whether it held."""
        held = expected == actual
        self.checks.append({"check": name, "expected": expected, "actual": actual, "held": held})
        if not held:
            self.verdict = FAILED
        return held

    def failed_checks(self) -> list[dict[str, Any]]:
        return [entry for entry in self.checks if not entry["held"]]

    def finish(self, verdict: str | None = None) -> StepRecord:
        if verdict is not None:
            self.verdict = verdict
        self.finished = utc_now()
        self.duration_ms = round((time.perf_counter() - self._clock) * 1000, 3)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "guide_section": self.guide_section,
            "inputs": self.inputs,
            "observations": self.observations,
            "checks": self.checks,
            "verdict": self.verdict,
            "started": self.started,
            "finished": self.finished,
            "duration_ms": self.duration_ms,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)
