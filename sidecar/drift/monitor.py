"""One detector per (model, signal), fed from the relay's hot path and evaluated on a timer.

`observe()` is a dict lookup plus `Detector.observe` (a few µs); it never allocates beyond a new
key and never raises for data it does not expect (unknown signals and keys past `max_keys` are
dropped and counted, since model names come from upstream responses). `evaluate(now)` does the
per-second work and returns the alert changes for the sinks; `snapshot()` feeds the gauges
`sidecar_drift_p95_seconds{model,signal,window}` and `sidecar_drift_alert_active{model,signal}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sidecar.drift.config import DEFAULT_FLOORS, DEFAULT_NORMALIZATION, DetectorConfig
from sidecar.drift.detector import Detector, WindowP95
from sidecar.drift.events import Alert, AlertChange
from sidecar.telemetry.names import DRIFT_SIGNALS, DRIFT_WINDOWS

Key = tuple[str, str]  # (model, signal)


def default_configs(
    *,
    threshold: float | None = None,
    floors: Mapping[str, float] | None = None,
    base: DetectorConfig | None = None,
) -> dict[str, DetectorConfig]:
    """Per-signal configs: the production design, with the per-signal floor and normalisation."""
    base = base or DetectorConfig()
    out: dict[str, DetectorConfig] = {}
    for signal in DRIFT_SIGNALS:
        floor = (floors or {}).get(signal, DEFAULT_FLOORS[signal])
        out[signal] = replace(
            base,
            floor=floor,
            threshold=base.threshold if threshold is None else threshold,
            normalization=DEFAULT_NORMALIZATION[signal],
        )
    return out


@dataclass(frozen=True, slots=True)
class DriftSnapshot:
    p95: dict[tuple[str, str, str], float]  # (model, signal, window) -> seconds; absent if empty
    active: dict[Key, Alert]
    dropped_samples: int


class DriftMonitor:
    def __init__(
        self, configs: Mapping[str, DetectorConfig] | None = None, *, max_keys: int = 256
    ) -> None:
        self._configs = dict(configs) if configs is not None else default_configs()
        self._detectors: dict[Key, Detector] = {}
        self._max_keys = max_keys
        self._now = 0.0
        self._cache: dict[Key, tuple[int, WindowP95]] = {}
        self.dropped_samples = 0

    def observe(
        self,
        signal: str,
        model: str,
        value: float,
        now: float,
        prompt_tokens: int | None = None,
        inflight: int | None = None,
        *,
        failed: bool = False,
    ) -> None:
        detector = self._detectors.get((model, signal))
        if detector is None:
            detector = self._add(model, signal)
            if detector is None:
                self.dropped_samples += 1
                return
        detector.observe(now, value, prompt_tokens, inflight, failed)

    def _add(self, model: str, signal: str) -> Detector | None:
        config = self._configs.get(signal)
        if config is None or len(self._detectors) >= self._max_keys:
            return None
        detector = Detector(config, signal=signal, model=model)
        self._detectors[model, signal] = detector
        return detector

    def evaluate(self, now: float) -> list[AlertChange]:
        self._now = now
        changes: list[AlertChange] = []
        for detector in self._detectors.values():
            changes.extend(detector.evaluate(now))
        return changes

    def detector(self, model: str, signal: str) -> Detector | None:
        return self._detectors.get((model, signal))

    def snapshot(self) -> DriftSnapshot:
        """p95 per (model, signal, window) as of the last `evaluate`, and the active alerts.

        Window p95s are recomputed at most once per slot per key (they need sketch merges).
        """
        now = self._now
        p95: dict[tuple[str, str, str], float] = {}
        active: dict[Key, Alert] = {}
        for key, detector in self._detectors.items():
            slot = int(now // detector.config.slot_seconds)
            cached = self._cache.get(key)
            if cached is None or cached[0] != slot:
                cached = (slot, detector.p95s(now))
                self._cache[key] = cached
            values = cached[1]
            model, signal = key
            for window, value in zip(
                DRIFT_WINDOWS, (values.short, values.medium, values.baseline), strict=True
            ):
                if value is not None:
                    p95[model, signal, window] = value
            if detector.alert is not None:
                active[key] = detector.alert
        return DriftSnapshot(p95, active, self.dropped_samples)
