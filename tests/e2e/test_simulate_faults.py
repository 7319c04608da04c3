"""`sidecar simulate` as a process: fault defaults from options and the environment, run-time
changes at /sim/faults, one-line errors for wrong options."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sidecar.simulate.faults import Faults
from tests.support.ports import free_port, wait_for_port
from tests.support.stack import running_stack, sidecar_cmd, start
from tests.support.timeouts import scaled

pytestmark = pytest.mark.e2e


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=scaled(10)) as response:
        return response.status, json.load(response)


def open_stream(port: int, body: dict[str, Any]) -> tuple[http.client.HTTPConnection, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(10))
    conn.request("POST", "/v1/chat/completions", json.dumps(body))
    return conn, conn.getresponse()


def chat(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": "a", "messages": [], "max_tokens": max_tokens, "stream": True, **extra}


def test_fault_options_are_the_defaults_and_sim_faults_changes_them(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.start_sim(
            "--stall-after-tokens", "2", "--stall-seconds", "forever",
            "--error-status", "429", "--retry-after", "9",
            "--served-model-name", "a", "--served-model-name", "b",
        )  # fmt: skip
        cli_faults = {
            **Faults().as_json(),
            "stall_after_tokens": 2,
            "error_status": 429,
            "retry_after": 9,
        }
        assert call(stack.sim_url + "/sim/faults") == (200, cli_faults)
        models = call(stack.sim_url + "/v1/models")[1]["data"]
        assert [m["id"] for m in models] == ["a", "b"]

        # The default stall holds a stream after 2 tokens until its client leaves...
        conn, stalled = open_stream(stack.sim_port, chat(10))
        assert stalled.status == 200
        lines = [stalled.readline() for _ in range(6)]  # role chunk, 2 tokens, blank lines
        assert sum(b'"content":" ' in line for line in lines) == 2
        # ...while a request that opts out runs to its end.
        clean_conn, clean = open_stream(
            stack.sim_port, chat(5, sim_fault={"stall_after_tokens": None})
        )
        assert clean.read().rstrip().endswith(b"data: [DONE]")
        clean_conn.close()
        assert stack.sim_stats()["active"] == 1
        conn.close()
        deadline = time.monotonic() + scaled(5)
        while stack.sim_stats()["aborted"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = stack.sim_stats()
        assert (stats["aborted"], stats["completed"], stats["active"]) == (1, 1, 0)
        assert stats["faults"] == {"stall_after_tokens": 1}

        # Changed at run time, then reset to the command line's defaults.
        changed = call(
            stack.sim_url + "/sim/faults", "POST", {"stall_after_tokens": None, "error_rate": 1}
        )
        assert changed[1]["stall_after_tokens"] is None and changed[1]["error_rate"] == 1.0
        conn, refused = open_stream(stack.sim_port, chat(5))
        assert (refused.status, refused.getheader("Retry-After")) == (429, "9")
        conn.close()
        assert call(stack.sim_url + "/sim/faults", "DELETE") == (200, cli_faults)


def test_fault_options_read_the_environment(tmp_path: Path) -> None:
    port = free_port()
    proc = start(
        "simulate",
        sidecar_cmd("simulate", "--listen", f"127.0.0.1:{port}"),
        tmp_path,
        {"SIDECAR_DROP_AFTER_TOKENS": "1", "SIDECAR_MALFORMED_EVERY": "4"},
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
        faults = call(f"http://127.0.0.1:{port}/sim/faults")[1]
        assert (faults["drop_after_tokens"], faults["malformed_every"]) == (1, 4)
    finally:
        proc.stop()


def test_wrong_fault_options_are_one_line_errors(tmp_path: Path) -> None:
    for args, message in [
        (["--malformed-every", "1"], "--malformed-every must be 0 (off) or ≥ 2"),
        (["--stall-seconds", "soon"], "'soon' is not a valid float"),
        (["--error-status", "200"], "200 is not in the range 400<=x<=599"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "simulate", "--listen", "127.0.0.1:1", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ},
            timeout=scaled(60),
        )
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr and message in result.stderr, result.stderr
