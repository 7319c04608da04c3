"""What the detector reports: alerts and their changes (values, frozen)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    WARN = "warn"
    CRIT = "crit"


@dataclass(frozen=True, slots=True)
class Alert:
    """One drift episode on one (model, signal); times are the caller's clock, in seconds.

    p95s are raw seconds, for people. `ratio` and `exceed_fraction` are measured on normalised
    values (what the detector tests), over the medium window.
    """

    id: int  # unique per detector; a reopened flap keeps its id
    signal: str
    model: str
    severity: Severity
    onset: float  # estimate: the last time the CUSUM statistic was 0 before it fired
    fired_at: float
    resolved_at: float | None
    baseline_p95: float
    short_p95: float | None
    medium_p95: float | None
    ratio: float
    exceed_fraction: float
    n: int  # samples in the medium window
    flaps: int = 0  # times it re-fired within the flap window after a clear

    @property
    def active(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True, slots=True)
class AlertFired:
    alert: Alert
    reopened: bool = False  # a flap: same id as the alert that cleared moments ago


@dataclass(frozen=True, slots=True)
class AlertEscalated:
    alert: Alert  # now CRIT; it was WARN


@dataclass(frozen=True, slots=True)
class AlertResolved:
    alert: Alert


AlertChange = AlertFired | AlertEscalated | AlertResolved
