"""`sidecar demo`: a simulated model server, the sidecar and a crowd of simulated users in one
process for a few seconds, then the cost report. Some users read to the end, some press stop,
some vanish mid-answer (tab closed, network gone). They ask over every streaming route (chat
completions, the Responses API, the Messages API), and a search index embeds documents over
HTTP (`/v1/embeddings`): `sidecar report --by route` splits the bill by API."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.client import Client, ClientError, connect
from sidecar.ledger import db
from sidecar.serve import ServeSettings, run
from sidecar.simulate.faults import Faults
from sidecar.simulate.model import SimSettings
from sidecar.simulate.server import create_app

MODELS = ("llama-3.1-8b-instruct", "llama-3.1-70b-instruct")
EMBEDDING_MODEL = "bge-m3"
TENANTS = ("acme", "globex", "initech")
# Each question goes over one of these, in these proportions.
ROUTES = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
ROUTE_WEIGHTS = (60, 25, 15)


@dataclass(slots=True)
class Tally:
    started: int = 0
    completed: int = 0
    cancelled: int = 0
    vanished: int = 0
    deltas: int = 0
    embeddings: int = 0
    errors: list[str] = field(default_factory=list)


def demo_prices() -> Path:
    return Path(str(resources.files("sidecar") / "data" / "demo-prices.toml"))


async def run_demo(
    db_url: str, seconds: float, users: int, ports: tuple[int, int, int], seed: int
) -> Tally:
    sim_port, listen_port, admin_port = ports
    db.upgrade(db_url)
    sim = web.AppRunner(
        create_app(
            SimSettings(
                ttft=0.15,
                tokens_per_second=40,
                output_tokens="lognormal:60:0.6",
                default_max_tokens=200,
                jitter=0.3,
                seed=seed,
                # Real model servers fail too: a few overloaded answers (503, Retry-After).
                faults=Faults(error_rate=0.01),
            )
        ),
        access_log=None,
    )
    await sim.setup()
    await web.TCPSite(sim, "127.0.0.1", sim_port).start()
    settings = ServeSettings(
        listen=f"127.0.0.1:{listen_port}",
        admin_listen=f"127.0.0.1:{admin_port}",
        upstream=f"http://127.0.0.1:{sim_port}",
        db=db_url,
        prices=demo_prices(),
        heartbeat_interval=2.0,
        heartbeat_timeout=2.0,
        drain_timeout=2.0,
        upstream_idle_timeout=2.0,  # the hung answers below end as `timeout` after 2 s
    )
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.get_running_loop().create_task(run(settings, ready, stop))
    await asyncio.wait(
        {server, asyncio.ensure_future(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    if server.done():
        await sim.cleanup()
        server.result()  # re-raise why the sidecar could not start
    tally = Tally()
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    url = f"ws://127.0.0.1:{listen_port}/v1/stream"
    crowd = [
        asyncio.create_task(_user(url, TENANTS[i % len(TENANTS)], rng.random(), deadline, tally))
        for i in range(users)
    ]
    http = f"http://127.0.0.1:{listen_port}/v1/embeddings"
    crowd.append(asyncio.create_task(_indexer(http, rng.random(), deadline, tally)))
    progress = asyncio.create_task(_progress(tally, deadline, seconds))
    await asyncio.gather(*crowd, return_exceptions=True)
    progress.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await progress
    stop.set()
    await server
    await sim.cleanup()
    return tally


async def _user(url: str, tenant: str, seed: float, deadline: float, tally: Tally) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        try:
            async with connect(url, tenant=tenant) as client:
                for _turn in range(rng.randint(1, 3)):
                    if time.monotonic() >= deadline:
                        return
                    if not await _ask(client, rng, tally):
                        break  # this user vanished: the socket is gone
        except ClientError as exc:
            tally.errors.append(exc.code)
        except (OSError, ConnectionError) as exc:
            tally.errors.append(str(exc))
        except Exception as exc:
            tally.errors.append(repr(exc))
        await asyncio.sleep(rng.uniform(0.1, 0.8))


async def _ask(client: Client, rng: random.Random, tally: Tally) -> bool:
    """One question. Like a chat UI, the user acknowledges what it rendered (`ack`), so when
    it stops or vanishes, the tokens generated after its last rendered one count as waste."""
    behaviour = rng.choices(("read", "cancel", "vanish"), weights=(60, 20, 20))[0]
    stop_after = rng.randint(3, 25)
    path = rng.choices(ROUTES, weights=ROUTE_WEIGHTS)[0]
    question = "Explain streaming tokens. " * rng.randint(1, 30)
    body = request_body(path, rng.choice(MODELS), question, rng.randint(40, 200))
    if rng.random() < 0.02:  # a hung GPU: the model server goes silent mid-answer
        body["sim_fault"] = {"stall_after_tokens": rng.randint(1, 10), "stall_seconds": "forever"}
    stream = client.generate(body, path=path, ack="manual")  # it renders every fourth delta
    tally.started += 1
    seen = 0
    try:
        async for delta in stream:
            seen += 1
            tally.deltas += 1
            if seen % 4 == 0 or seen == stop_after:
                stream.rendered(delta.seq)
            if seen == stop_after and behaviour != "read":
                # The user reads, thinks, then acts; tokens keep streaming meanwhile.
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                if behaviour == "cancel":
                    stream.cancel()
                    tally.cancelled += 1
                    return True
                tally.vanished += 1
                await client.abort()  # no close frame, like a killed tab or a dead network
                return False
    except ClientError as exc:
        tally.errors.append(exc.code)
        return True
    tally.completed += 1
    return True


def request_body(path: str, model: str, question: str, max_tokens: int) -> dict[str, Any]:
    """The same question in each route's request shape."""
    if path == "/v1/responses":
        return {"model": model, "input": question, "max_output_tokens": max_tokens}
    messages = [{"role": "user", "content": question}]
    return {"model": model, "messages": messages, "max_tokens": max_tokens}


async def _indexer(url: str, seed: float, deadline: float, tally: Tally) -> None:
    """A search index embedding batches of documents over HTTP, as the OpenAI SDK would."""
    rng = random.Random(seed)
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            documents = ["A document about token streams. " * rng.randint(1, 20)] * 8
            body = {"model": EMBEDDING_MODEL, "input": documents}
            headers = {"X-Sidecar-Tenant": rng.choice(TENANTS)}
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        tally.embeddings += 1
                    else:
                        tally.errors.append(f"embeddings: HTTP {response.status}")
            except aiohttp.ClientError as exc:
                tally.errors.append(f"embeddings: {exc}")
            await asyncio.sleep(rng.uniform(0.2, 0.6))


async def _progress(tally: Tally, deadline: float, seconds: float) -> None:
    tty = sys.stderr.isatty()
    while True:
        left = max(0.0, deadline - time.monotonic())
        line = (
            f"[{seconds - left:4.0f}s/{seconds:.0f}s] streams {tally.started}: "
            f"{tally.completed} read to the end, {tally.cancelled} stopped, "
            f"{tally.vanished} vanished; {tally.deltas} deltas relayed; "
            f"{tally.embeddings} embedding batches"
        )
        sys.stderr.write(("\r" + line) if tty else (line + "\n"))
        sys.stderr.flush()
        await asyncio.sleep(0.5 if tty else 5.0)
