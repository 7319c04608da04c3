"""One generation's timing and faults, over any channel (an HTTP stream or a realtime socket).

The model produces tokens at the configured pace whether or not anyone reads them, and stops as
soon as its peer is gone (as vLLM does), so what it counts is what a real server would have
spent. Every wait polls for the peer leaving, so a stall whose client disconnects ends at once.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

from sidecar.simulate.dialects import Finish, StreamDialect
from sidecar.simulate.faults import Faults, Malformer
from sidecar.simulate.model import SimSettings
from sidecar.simulate.stats import Tally

POLL_SECONDS = 0.05
DONE = b"data: [DONE]"


class Channel(Protocol):
    def gone(self) -> bool:
        """The peer left (or, on a realtime socket, cancelled this response)."""

    async def send(self, event: bytes) -> None:
        """Raises ConnectionError when the peer has left."""

    async def drop(self) -> None:
        """End the connection abruptly: no end marker, no goodbye."""


async def pause(channel: Channel, seconds: float) -> bool:
    """Wait `seconds` (math.inf: until the peer leaves); False if the peer left meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not channel.gone():
        left = deadline - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(left, POLL_SECONDS))
    return False


class Generation:
    def __init__(
        self,
        settings: SimSettings,
        tally: Tally,
        dialect: StreamDialect,
        faults: Faults,
        length: int,
        finish: Finish,
    ) -> None:
        self.settings, self.tally, self.dialect = settings, tally, dialect
        self.faults, self.length, self.finish = faults, length, finish
        self.malformer = Malformer(faults.malformed_every)

    def produce(self) -> str:
        text = self.settings.token_text(self.tally.generated)
        self.tally.token()
        return text

    async def stream(self, channel: Channel) -> str:
        """Run to the end; returns the outcome: completed, aborted or failed."""
        try:
            return await self._stream(channel)
        except ConnectionError:
            return "aborted"  # the client left while we wrote: stop generating

    async def _stream(self, channel: Channel) -> str:
        faults = self.faults
        if faults.stall_before_first_token:
            self.tally.fault("stall_before_first_token")
            if not await pause(channel, faults.stall_before_first_token):
                return "aborted"
        await self._send(channel, self.dialect.preamble())
        if not await pause(channel, self.settings.first_token_delay()):
            return "aborted"
        await self._send(channel, self.dialect.opening())
        if (outcome := await self._after(channel, 0)) is not None:
            return outcome
        for index in range(self.length):
            if index and not await pause(channel, self.settings.token_interval()):
                return "aborted"
            if channel.gone():
                return "aborted"
            last = index == self.length - 1
            text = self.produce()
            await self._send(
                channel, [self.dialect.delta(text, index + 1, self.finish if last else None)]
            )
            if (outcome := await self._after(channel, index + 1)) is not None:
                return outcome
        await self._send(channel, self.dialect.closing(self.tally.generated, self.finish))
        return "completed"

    async def _after(self, channel: Channel, count: int) -> str | None:
        """The faults due after `count` content chunks; an outcome if the stream ends here."""
        faults = self.faults
        if faults.stall_after_tokens == count:
            self.tally.fault("stall_after_tokens")
            seconds = math.inf if faults.stall_is_forever() else faults.stall_seconds
            if not await pause(channel, seconds):
                return "aborted"
        if faults.error_after_tokens == count:
            self.tally.fault("error_after_tokens")
            message = f"simulated model server error after {count} tokens"
            await self._send(channel, self.dialect.stream_error(message, count))
            return "failed"
        if faults.drop_after_tokens == count:
            self.tally.fault("drop_after_tokens")
            await channel.drop()
            return "failed"
        return None

    async def _send(self, channel: Channel, events: list[bytes]) -> None:
        for event in events:
            if not event.startswith(DONE) and self.malformer.next_is_malformed():
                self.tally.fault("malformed_every")
                await channel.send(self.dialect.malformed())
            await channel.send(event)
