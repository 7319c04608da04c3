"""What every scenario shares: the settings of one run, the running servers and the load workers."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.relay.loadgen import Workers
from bench.relay.procs import Proc, Procs

SIM_BASE_TPS = 50.0  # the simulator's --tokens-per-second; each level scales it via itl_factor


@dataclass
class Config:
    """One run's parameters. `full()` is the documented run, `quick()` the < 30 s smoke run."""

    name: str = "full"
    levels: tuple[int, ...] = (1, 64, 200, 1000)
    rounds: int = 3
    duration: float = 6.0  # seconds of load per variant per round
    aggregate_rate: float = 3000.0  # tokens/s across all streams (2 shared cores)
    max_rate_per_stream: float = 100.0
    ttft: float = 0.02  # the simulator's time to first token
    stagger: float = 1.0  # users start spread over this many seconds
    warmup: float = 1.0  # seconds of light load per variant before a scenario's first level
    answer_seconds: float = 1.0  # how long one answer streams (sets max_tokens per level)
    cpu_levels: tuple[int, ...] = (64, 200)  # levels whose CPU per token is headline
    idle_counts: tuple[int, ...] = (1000, 10_000)
    idle_heartbeat: float = 2.0
    idle_hold: float = 5.0
    idle_fresh: bool = True  # a fresh server per count (the quick run reuses the loaded ones)
    handshake_seconds: float = 3.0
    handshake_concurrency: int = 32
    ramp_streams: int = 64
    ramp_rates: tuple[float, ...] = (250, 500, 1000, 1500, 2250, 3400, 5000, 7600, 11400)
    ramp_seconds: float = 3.0
    probes: int = 200
    # The `requests` scenario (closed loop, per-request cost): concurrency levels, and answer
    # shapes (name, tokens per answer, tokens/s per stream) after a `request_ttft` first token.
    request_levels: tuple[int, ...] = (1, 16, 64)
    request_shapes: tuple[tuple[str, int, float], ...] = (
        ("short", 16, 1000.0),
        ("long", 200, 200.0),
    )
    request_ttft: float = 0.05
    request_stagger: float = 0.3
    capacity_quota: float = 0.1  # fraction of a core each relay gets in the capacity scenario
    # (streams, tokens/s per stream, tokens per answer), from one token per read to several
    capacity_shapes: tuple[tuple[int, float, int], ...] = (
        (200, 15.0, 60),
        (64, 100.0, 200),
        (16, 400.0, 400),
    )
    workers: int = 2
    seed: int = 1
    nginx: bool = True
    scenarios: tuple[str, ...] = (
        "ws",
        "http",
        "requests",
        "ramp",
        "capacity",
        "handshakes",
        "idle",
        "close",
    )
    out_dir: Path = Path("bench/results")
    commit: str | None = None  # measure this commit's sidecar/ instead of the working tree

    @classmethod
    def full(cls) -> Config:
        return cls()

    @classmethod
    def quick(cls) -> Config:
        return cls(
            name="quick",
            levels=(1, 64),
            rounds=1,
            duration=0.6,
            stagger=0.1,
            warmup=0.0,
            answer_seconds=0.2,
            cpu_levels=(64,),
            idle_counts=(1000,),
            idle_hold=1.0,
            idle_fresh=False,
            handshake_seconds=0.6,
            ramp_streams=16,
            ramp_rates=(800, 3200),
            ramp_seconds=0.4,
            probes=15,
            capacity_shapes=((16, 200.0, 40),),
            request_levels=(1, 16),
            request_stagger=0.05,
        )

    def rate_per_stream(self, streams: int) -> float:
        return min(self.max_rate_per_stream, self.aggregate_rate / streams)


@dataclass
class Env:
    config: Config
    procs: Procs
    workers: Workers
    sim: Proc
    servers: dict[str, Proc] = field(default_factory=dict)

    def set_rate(self, tokens_per_second: float, ttft: float | None = None) -> None:
        """Per-stream token rate of the simulator, and its time to first token (default: the
        run's `ttft`), changed at run time (POST /sim/latency)."""
        factor = (ttft if ttft is not None else self.config.ttft) / self.config.ttft
        update = {"itl_factor": SIM_BASE_TPS / tokens_per_second, "ttft_factor": factor}
        data = json.dumps(update).encode()
        request = urllib.request.Request(self.sim.url + "/sim/latency", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def traced_sidecar(self) -> Proc:
        """A second sidecar exporting every span over OTLP/HTTP to a receiver on loopback
        (tracing on), started on first use."""
        if "traced" not in self.servers:
            self.servers["otlp-sink"] = self.procs.otlp_sink()
            otlp = self.servers["otlp-sink"].url
            self.servers["traced"] = self.procs.sidecar(self.sim.url, 20.0, "traced", otlp=otlp)
        return self.servers["traced"]

    def progress(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[2K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def progress_done(self) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
