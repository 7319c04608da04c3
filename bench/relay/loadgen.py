"""Load-generator worker processes and the bench-side handle that drives them.

A worker is a long-lived `python -m bench.relay.loadgen` reading one JSON job per line on stdin
and answering one JSON line on stdout, so the servers and the clients never share an event loop
and starting a job costs nothing. A worker exits when its stdin closes (the bench went away).
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import sys
import time
from typing import IO, Any

import uvloop

from bench.relay.clients import stream_job
from bench.relay.conns import IdlePool, handshake_job, probe_job
from bench.relay.procs import child_env, raise_fd_limit


async def _serve(reader: IO[str], writer: IO[str]) -> None:
    loop = asyncio.get_running_loop()
    pool = IdlePool()
    while True:
        line = await loop.run_in_executor(None, reader.readline)
        if not line:
            await pool.close()
            return
        job = json.loads(line)
        try:
            kind = job["job"]
            if kind == "stream":
                result = await stream_job(job)
            elif kind == "handshakes":
                result = await handshake_job(job)
            elif kind == "probe":
                result = await probe_job(job)
            elif kind == "idle_open":
                result = await pool.open(job)
            elif kind == "idle_close":
                result = await pool.close()
            else:
                result = {"failed": f"unknown job {kind!r}"}
        except Exception as exc:
            result = {"failed": f"{type(exc).__name__}: {exc}"}
        writer.write(json.dumps(result) + "\n")
        writer.flush()


def main() -> None:
    raise_fd_limit()
    uvloop.run(_serve(sys.stdin, sys.stdout))


class Workers:
    """N worker processes; `run` sends each its job and waits (bounded) for every answer."""

    def __init__(self, count: int) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.relay.loadgen"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
                env=child_env(),
            )
            for _ in range(count)
        ]

    def __len__(self) -> int:
        return len(self.procs)

    def run(self, jobs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        """Jobs go to workers 0..len(jobs)-1 at once; answers come back in the same order."""
        assert len(jobs) <= len(self.procs)
        active = self.procs[: len(jobs)]
        for proc, job in zip(active, jobs, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
        deadline = time.monotonic() + timeout
        results = []
        for proc in active:
            assert proc.stdout is not None
            ready, _, _ = select.select(
                [proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            line = proc.stdout.readline() if ready else ""
            if not line:
                raise RuntimeError(f"load worker {proc.pid} gave no answer within {timeout:.0f} s")
            result = json.loads(line)
            if "failed" in result:
                raise RuntimeError(f"load worker {proc.pid}: {result['failed']}")
            results.append(result)
        return results

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()


if __name__ == "__main__":
    main()
