"""A Python client for the sidecar's WebSocket protocol v1 (DESIGN §3), on asyncio.

    async with connect("ws://127.0.0.1:8080/v1/stream", tenant="acme") as client:
        stream = client.generate({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        async for delta in stream:
            print(delta.text, end="")
        result = await stream.result()

The client acknowledges what was iterated (batched, within a message budget), reconnects with
exponential backoff and full jitter, and resumes running answers so that every delta is handed
out exactly once and in order. `docs/clients.md` describes the behaviour for client developers.
"""

from sidecar.client.connection import Client, connect
from sidecar.client.dial import Timeouts
from sidecar.client.errors import ClientError, Code
from sidecar.client.policy import Backoff
from sidecar.client.stream import Delta, Result, Stream, Usage

__all__ = [
    "Backoff",
    "Client",
    "ClientError",
    "Code",
    "Delta",
    "Result",
    "Stream",
    "Timeouts",
    "Usage",
    "connect",
]
