"""A rolling restart with OpenAI-SDK (HTTP) streams in flight: SIGTERM gives them the same
--drain-timeout as WebSocket streams, then ends them as `shutdown` with their true counts and an
error event the client raises; the admin port answers until the process exits."""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.e2e.ledger import stream_rows
from tests.support.postgres import PostgresCluster
from tests.support.stack import running_stack
from tests.support.timeouts import scaled

PROMPT = [{"role": "user", "content": "Tell me a long story"}]


class Reader(threading.Thread):
    """One streaming chat completion through the sidecar, read by the official client."""

    def __init__(self, base_url: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.client = openai.OpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0)
        self.max_tokens = max_tokens
        self.deltas = 0
        self.error: Exception | None = None
        self.finished = False

    def run(self) -> None:
        try:
            stream = self.client.chat.completions.create(
                model="sim-small",
                messages=PROMPT,  # type: ignore[arg-type]
                max_tokens=self.max_tokens,
                stream=True,
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    self.deltas += 1
            self.finished = True
        except openai.APIError as exc:
            self.error = exc
        finally:
            self.client.close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # nothing listening any more


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.fresh_database("drain")


def test_sigterm_drains_http_streams_with_true_counts(tmp_path: Path, db_url: str) -> None:
    with running_stack(tmp_path, db_url) as stack:
        stack.start_sim("--tokens-per-second", "20")
        serve = stack.start_serve("--drain-timeout", "2")
        short = Reader(stack.http_url, 4)  # finishes inside the drain window
        longs = [Reader(stack.http_url, 400) for _ in range(3)]  # cannot finish: shutdown
        for reader in (short, *longs):
            reader.start()
        deadline = time.monotonic() + scaled(10)
        while not all(r.deltas >= 3 for r in longs) and time.monotonic() < deadline:
            time.sleep(0.02)
        serve.popen.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        ready: list[int] = []
        metrics: list[int] = []
        while serve.popen.poll() is None and time.monotonic() - t_term < scaled(15):
            ready.append(_status(stack.admin_url + "/readyz"))
            metrics.append(_status(stack.admin_url + "/metrics"))
            time.sleep(0.1)
        assert serve.popen.wait(scaled(10)) == 0, serve.output()
        for reader in (short, *longs):
            reader.join(scaled(5))
        # The drain held the streams for --drain-timeout, not uvicorn's fixed 5 s or nothing.
        assert short.finished and short.error is None and short.deltas == 4
        for reader in longs:
            assert reader.error is not None, "a cut answer must raise, not end silently"
            assert "shutting down" in str(reader.error)
            assert 20 <= reader.deltas < 400  # about 2 s at 20 tokens/s
        # While draining: not ready (the first poll may beat the signal's handling), and the
        # counts can still be scraped for the whole drain window.
        draining = ready[ready.index(503) :]
        assert set(draining) <= {503, 0}, ready
        assert draining.count(503) >= 10, ready  # ~2 s of drain polled every 0.1 s
        assert metrics.count(200) >= draining.count(503), metrics

        rows = stream_rows(stack.db_url)
        assert len(rows) == 4, rows
        by_outcome = sorted(r["outcome"] for r in rows)
        assert by_outcome == ["completed"] + ["shutdown"] * 3
        cut = sorted(r["delivered_tokens"] for r in rows if r["outcome"] == "shutdown")
        assert cut == sorted(r.deltas for r in longs)  # what each client really read
        for row in rows:
            assert row["ended_at"] is not None and row["ingress"] == "http"
            assert row["generated_tokens"] >= row["delivered_tokens"] > 0
        assert stack.sim_stats()["active"] == 0
