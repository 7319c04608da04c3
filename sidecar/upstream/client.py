"""HTTP client for an OpenAI-compatible upstream (aiohttp, one pooled session per sidecar).

Closing an `UpstreamResponse` closes its TCP connection, which is how vLLM, TGI, llama.cpp and
Ollama learn that nobody is listening; for SGLang the abort endpoint is called as well.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from sidecar.errors import UpstreamError
from sidecar.upstream.flavour import Flavour

READ_CHUNK = 64 * 1024


class UpstreamResponse:
    """A streaming response being read; iterate for raw bytes, `close()` to abort."""

    __slots__ = ("_client", "_request_id", "_response", "closed")

    def __init__(
        self, client: UpstreamClient, response: aiohttp.ClientResponse, request_id: str
    ) -> None:
        self._client = client
        self._response = response
        self._request_id = request_id
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while True:
            data = await content.readany()
            if not data:
                return
            yield data

    def take_buffered(self) -> bytes:
        """Bytes that already arrived but were not read yet (they count as generated)."""
        try:
            return self._response.content.read_nowait()
        except (RuntimeError, aiohttp.ClientError):
            return b""

    def close(self) -> None:
        """Abort: drop the connection rather than return it to the pool mid-stream."""
        if self.closed:
            return
        self.closed = True
        finished = self._response.content.at_eof()
        if finished:
            self._response.release()
        else:
            self._response.close()
            if self._client.flavour.abort_endpoint:
                self._client.abort_later(self._request_id)


class UpstreamClient:
    def __init__(
        self,
        base_url: str,
        flavour: Flavour = Flavour.OPENAI,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.flavour = flavour
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, json_serialize=_dumps
        )

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **extra}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def stream(
        self, path: str, body: dict[str, Any], request_id: str, headers: Mapping[str, str]
    ) -> UpstreamResponse:
        """Send the request; raise `UpstreamError` unless a 2xx event stream comes back."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        all_headers = self._headers({"X-Request-Id": request_id, **headers})
        try:
            response = await self._session.post(
                self.base_url + path, data=orjson.dumps(body), headers=all_headers
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise UpstreamError(
                "upstream_unavailable", f"model server at {self.base_url} unreachable: {exc}"
            ) from None
        if response.status >= 400:
            detail = await _error_detail(response)
            response.release()
            code = "upstream_rejected" if response.status < 500 else "upstream_error"
            raise UpstreamError(
                code, f"model server answered {response.status}: {detail}", response.status
            )
        return UpstreamResponse(self, response, request_id)

    async def ready(self) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(self.base_url + "/v1/models") as response:
                return response.status < 500
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    def abort_later(self, request_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._abort(request_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abort(self, request_id: str) -> None:
        assert self._session is not None
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with self._session.post(
                self.base_url + "/abort_request",
                data=orjson.dumps({"rid": request_id}),
                headers=self._headers({}),
                timeout=aiohttp.ClientTimeout(total=5),
            ):
                pass


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    try:
        raw = await asyncio.wait_for(response.read(), 2.0)
    except (aiohttp.ClientError, TimeoutError):
        return response.reason or "no detail"
    try:
        data = orjson.loads(raw)
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else data
        return str(message)[:300]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return raw[:300].decode("utf-8", "replace")
