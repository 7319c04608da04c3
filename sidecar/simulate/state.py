"""The simulated server's shared state: settings, the faults in force now, and its stats."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web

from sidecar.simulate.faults import Faults
from sidecar.simulate.model import SimSettings
from sidecar.simulate.stats import SimStats


@dataclass(slots=True)
class SimState:
    settings: SimSettings
    stats: SimStats = field(default_factory=SimStats)
    faults: Faults = field(init=False)  # POST /sim/faults changes it; DELETE restores the defaults
    started: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.faults = self.settings.faults


STATE_KEY = web.AppKey("sim", SimState)
