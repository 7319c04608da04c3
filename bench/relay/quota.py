"""A CPU quota for one benchmark process, to measure a relay when it is saturated.

At the benchmark's usual rates the relay's event loop sleeps between tokens, so CPU per token
includes a wake-up for nearly every token (on this VM a sleep and wake-up alone costs ~25 µs of
CPU, `python -m bench.relay.oscost`). A saturated relay never sleeps. The simulator and the load
clients cannot saturate a relay on two shared cores, so the relay gets a small CFS quota instead
(a fraction of one core, enforced every 10 ms): with more load offered than it can carry,
tokens/s delivered ÷ quota is its capacity per core, and its CPU ÷ tokens its cost per token
when saturated.

Needs root and a cgroup v1 `cpu` hierarchy or a cgroup v2 tree with the `cpu` controller.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")
PERIOD_US = 10_000


class QuotaUnavailable(RuntimeError):
    pass


def available() -> bool:
    """Whether this process can create a group with a CPU quota (root and a `cpu` controller)."""
    try:
        CpuQuota("probe", 0.5).close()
    except (QuotaUnavailable, OSError):
        return False
    return True


class CpuQuota:
    """One cgroup holding one process at `fraction` of a core; `close()` removes it."""

    def __init__(self, name: str, fraction: float) -> None:
        if not 0.01 <= fraction <= 1.0:
            raise QuotaUnavailable(f"--cpu-quota {fraction} is out of range: use 0.01 to 1.0")
        quota = round(PERIOD_US * fraction)
        if (_V1 / "cpu.cfs_quota_us").exists():
            self.path = _V1 / f"bench-{name}-{os.getpid()}"
            self._mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        elif "cpu" in _read(_V2 / "cgroup.controllers").split():
            self.path = _V2 / f"bench-{name}-{os.getpid()}"
            self._mkdir()
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            raise QuotaUnavailable(
                "no writable cgroup cpu controller (/sys/fs/cgroup/cpu or cgroup v2 'cpu'); "
                "run as root on a machine that has one, or leave out --cpu-quota"
            )
        self.fraction = quota / PERIOD_US

    def _mkdir(self) -> None:
        try:
            self.path.mkdir(exist_ok=True)
        except OSError as exc:
            raise QuotaUnavailable(f"cannot create {self.path}: {exc.strerror}") from None

    def add(self, pid: int) -> None:
        """Move a process (all its threads) into the group."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def release(self, pid: int) -> None:
        """Move a process back to the root group (no quota), for scenarios that follow."""
        (self.path.parent / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        """Processes must have exited (or moved) before the group can be removed."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def saturation(cpu_us_per_token: float, token_rate: float, fraction: float) -> dict[str, float]:
    """What a run under a quota says: tokens/s one whole core would carry, and the share of its
    quota the relay used (below ~90 % it kept up with the offer: it was not saturated)."""
    return {
        "tokens_per_s_per_core": token_rate / fraction,
        "quota_used": cpu_us_per_token * token_rate / 1e6 / fraction,
    }


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
