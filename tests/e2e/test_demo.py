"""`sidecar demo` runs end to end and leaves nothing behind (the README's first command)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port, port_is_open


@pytest.mark.timeout(120)
def test_demo_prints_the_cost_report_and_exits_clean(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar",
            "demo",
            "--seconds",
            "4",
            "--users",
            "12",
            "--db",
            f"sqlite:///{tmp_path / 'demo.db'}",
            "--ports",
            ",".join(map(str, ports)),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Cost report by model, tenant" in out and "client_cancelled" in out
    # The users ask over every streaming route; an indexer embeds over HTTP.
    by_route = out[out.index("Cost report by route") : out.index("Cost report by outcome")]
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/embeddings"):
        assert path in by_route, by_route
    match = re.search(r"Generated (\d+) tokens, delivered (\d+): (\d+) wasted", out)
    assert match, out
    generated, delivered, wasted = map(int, match.groups())
    assert generated == delivered + wasted and wasted > 0
    assert not any(port_is_open("127.0.0.1", p) for p in ports)  # nothing left running
    # The summary says what happened, from the ledger: the same counts as the outcome table.
    summary = re.search(r"(\d+) streams in the ledger: (.*) \(\d+ client errors\)\.", out)
    assert summary, out
    said = {outcome: int(n) for n, outcome in re.findall(r"(\d+) [a-z -]+\((\w+)\)", summary[2])}
    table = out[out.index("Cost report by outcome") :].splitlines()
    body = table[3 : table.index(table[2], 3)]  # between the two rules
    recorded = {line.split()[0]: int(line.split()[1]) for line in body}
    assert said == recorded and sum(said.values()) == int(summary[1])
