"""Client for an OpenAI-compatible upstream (sidecar.upstream.http1: keep-alive HTTP/1.1).

Closing an `UpstreamResponse` closes its TCP connection, which is how vLLM, TGI, llama.cpp and
Ollama learn that nobody is listening; for SGLang the abort endpoint is called as well.

Every request (the stream, the readiness probe, SGLang's abort) is under the pool's two
allowances for a silent server, `first_byte_timeout` and `idle_timeout` (0 turns one off);
overrunning one raises `UpstreamTimeout` from `stream()` or from iterating `chunks()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from sidecar.accounting.stream import clean_model
from sidecar.errors import ConfigError, UpstreamError, UpstreamTimeout
from sidecar.upstream.flavour import Flavour
from sidecar.upstream.http1 import Origin, Pool, Response
from sidecar.upstream.outage import OutageLog

log = logging.getLogger("sidecar.upstream")

# Transport failures of the upstream connection, as the relay sees them. A response cut off
# or malformed mid-body raises `BrokenResponse`, a `ConnectionError`.
UPSTREAM_IO_ERRORS = (OSError, TimeoutError)
MODEL_LIST_BYTES = 1024 * 1024
READY_TIMEOUT = 5.0
MAX_LISTED_MODELS = 1000


def parse_model_ids(body: bytes) -> list[str] | None:
    """`{"data": [{"id": ...}, ...]}` → the ids, cleaned as a request's model is (so they
    compare equal), at most `MAX_LISTED_MODELS`; None for anything else."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        return None
    ids = (item.get("id") for item in data[:MAX_LISTED_MODELS] if isinstance(item, dict))
    return [clean_model(i) for i in ids if isinstance(i, str) and i]


class UpstreamResponse:
    """A streaming response being read; iterate for raw bytes, `close()` to abort."""

    __slots__ = ("_client", "_request_id", "_response", "closed")

    def __init__(self, client: UpstreamClient, response: Response, request_id: str) -> None:
        self._client = client
        self._response = response
        self._request_id = request_id
        self.closed = False

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.chunks()

    def body_ready(self) -> bool:
        return self._response.body_ready()

    def read_to_end(self) -> bool:
        """The model server's answer ended cleanly and all of it was read."""
        return self._response.read_to_end()

    def first_token_relayed(self) -> None:
        """From now on this stream's reads wake the relay after those of streams still waiting
        for their first token (`sidecar.upstream.http1.Lane`)."""
        self._response.urgent = False

    def take_buffered(self) -> bytes:
        """Bytes that already arrived but were not read yet (they count as generated)."""
        return self._response.take_buffered()

    def close(self) -> None:
        """Finished: back to the pool. Mid-stream: drop the connection (never reuse it)."""
        if self.closed:
            return
        self.closed = True
        finished = self._response.complete
        self._response.release()
        if not finished and self._client.flavour.abort_endpoint:
            self._client.abort_later(self._request_id)


class UpstreamClient:
    def __init__(
        self,
        base_url: str,
        flavour: Flavour = Flavour.OPENAI,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 300.0,
        idle_timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.flavour = flavour
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        try:
            self._origin = Origin(self.base_url)
        except ValueError as exc:
            raise ConfigError(f"--upstream: {exc}") from None
        self._pool: Pool | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._outage = OutageLog()

    async def start(self) -> None:
        self._pool = Pool(
            self._origin, self._connect_timeout, self._first_byte_timeout, self._idle_timeout
        )

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pool is not None:
            self._pool.close()

    def auth_headers(self) -> dict[str, str]:
        """The credential for the model server (`--upstream-api-key`), for other transports."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {**JSON_HEADERS, **extra}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def _request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Response:
        assert self._pool is not None, "UpstreamClient.start() was not awaited"
        try:
            response = await self._pool.request(method, path, body, headers)
        except UPSTREAM_IO_ERRORS as exc:
            self._unreachable(exc)
            raise UpstreamError(
                "upstream_unavailable", f"model server at {self.base_url} unreachable: {exc}"
            ) from None
        lasted = self._outage.reached(time.monotonic())
        if lasted is not None:
            log.info(
                "upstream %s reachable again after %.1f s",
                self.base_url,
                lasted,
                extra={"event": "upstream_reachable", "upstream": self.base_url},
            )
        return response

    def _unreachable(self, exc: BaseException) -> None:
        failures = self._outage.failed(time.monotonic())
        if failures is not None:
            log.warning(
                "upstream %s unreachable: %s",
                self.base_url,
                exc or type(exc).__name__,
                extra={
                    "event": "upstream_unreachable",
                    "upstream": self.base_url,
                    "failures": failures,
                },
            )

    async def stream(
        self, path: str, body: dict[str, Any], request_id: str, headers: Mapping[str, str]
    ) -> UpstreamResponse:
        """Send the request; raise `UpstreamError` unless a 2xx event stream comes back."""
        all_headers = self._headers({"X-Request-Id": request_id, **headers})
        response = await self._request("POST", path, orjson.dumps(body), all_headers)
        if response.status >= 400:
            try:
                detail = await _error_detail(response)
            finally:
                response.release()  # also when cancelled meanwhile: no connection left out
            code = "upstream_rejected" if response.status < 500 else "upstream_error"
            raise UpstreamError(
                code, f"model server answered {response.status}: {detail}", response.status
            )
        return UpstreamResponse(self, response, request_id)

    async def forward(
        self, method: str, target: str, body: bytes, headers: Mapping[str, str], limit: int
    ) -> tuple[int, bytes]:
        """A request passed through as it is (`target`: path and query): the status and at
        most `limit` bytes of the body (`UpstreamError` if it is longer or unreachable)."""
        response = await self._request(method, target, body, self._headers(headers))
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in response.chunks():
                size += len(chunk)
                if size > limit:
                    raise UpstreamError(
                        "upstream_error", f"model server's answer is larger than {limit} bytes"
                    )
                parts.append(chunk)
        finally:
            response.release()
        return response.status, b"".join(parts)

    async def ready(self) -> bool:
        """Does the model server answer `GET /v1/models` within 5 s? (A readiness probe must
        not wait as long as a streaming request may: the first-byte timeout is minutes.)"""
        try:
            response = await asyncio.wait_for(
                self._request("GET", "/v1/models", b"", self._headers({})), READY_TIMEOUT
            )
        except (UpstreamError, TimeoutError):
            return False
        try:
            with contextlib.suppress(UpstreamTimeout, *UPSTREAM_IO_ERRORS):
                await asyncio.wait_for(response.read(), 5.0)
        finally:
            response.release()
        return response.status < 500

    async def model_ids(self) -> list[str] | None:
        """The ids the upstream's `GET /v1/models` lists, or None when it does not answer."""
        try:
            response = await self._request("GET", "/v1/models", b"", self._headers({}))
        except UpstreamError:
            return None
        try:
            body = await asyncio.wait_for(response.read(MODEL_LIST_BYTES), 5.0)
        except UPSTREAM_IO_ERRORS:
            return None
        finally:
            response.release()
        return parse_model_ids(body) if response.status == 200 else None

    def abort_later(self, request_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._abort(request_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abort(self, request_id: str) -> None:
        body = orjson.dumps({"rid": request_id})
        with contextlib.suppress(UpstreamError, *UPSTREAM_IO_ERRORS):
            response = await asyncio.wait_for(
                self._request("POST", "/abort_request", body, self._headers({})), 5.0
            )
            try:
                with contextlib.suppress(UpstreamTimeout, *UPSTREAM_IO_ERRORS):
                    await asyncio.wait_for(response.read(), 5.0)
            finally:
                response.release()


JSON_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "text/event-stream, application/json",
    "Accept-Encoding": "identity",
}


async def _error_detail(response: Response) -> str:
    try:
        raw = await asyncio.wait_for(response.read(), 2.0)
    except (UpstreamTimeout, *UPSTREAM_IO_ERRORS):
        return "no detail"
    try:
        data = orjson.loads(raw)
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else data
        return str(message)[:300]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return raw[:300].decode("utf-8", "replace")
