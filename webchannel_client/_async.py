"""The asyncio client: the same calls as :class:`~webchannel_client.Client`, awaitable, plus subscribe."""

from __future__ import annotations

import asyncio
from types import TracebackType

import httpx

from . import _common
from .errors import error_from_transport
from .models import Channel
from .subscription import Subscription, TokenSource


class AsyncClient:
    """Create channels, publish, count subscribers, close channels and subscribe, with asyncio.

    Same arguments and retry rule as :class:`~webchannel_client.Client`. Use it as an async
    context manager, or await :meth:`aclose` (alias :meth:`close`).
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 10.0, retries: int = 3) -> None:
        if retries < 0 or timeout <= 0:
            raise ValueError(f"retries must be >= 0 and timeout > 0, not {retries!r} and {timeout!r}")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, headers={"User-Agent": _common.USER_AGENT}, follow_redirects=False
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the pooled connections."""
        await self._http.aclose()

    aclose = close

    async def create_channel(self, channel_id: str | None = None) -> Channel:
        """Create a channel (a random id unless ``channel_id`` is given) and return its tokens."""
        return _common.channel_from(await self._send(_common.create_call(self.api_key, channel_id)))

    async def publish(
        self,
        channel_id: str,
        data: bytes | bytearray | memoryview | str,
        token: str | None = None,
        wait: float | None = None,
    ) -> int | None:
        """Send ``data`` to every subscriber; the number it was sent to, if the server says."""
        call = _common.publish_call(self.api_key, channel_id, data, token, wait)
        return _common.subscribers(_common.checked(await self._send(call)))

    async def info(self, channel_id: str) -> int:
        """How many subscribers the channel has, across every server process."""
        return _common.info_from(await self._send(_common.info_call(self.api_key, channel_id)))

    async def close_channel(self, channel_id: str, final: bytes | bytearray | memoryview | str | None = None) -> int:
        """Deliver ``final`` (if any) as the last message, then close every subscriber; how many there were."""
        response = _common.checked(await self._send(_common.close_call(self.api_key, channel_id, final)))
        return _common.subscribers(response) or 0

    def subscribe(self, channel_id: str, token: str, *, get_token: TokenSource | None = None) -> Subscription:
        """The channel's messages as an async iterator of ``bytes``.

        ``async with client.subscribe(cid, token) as messages:`` connects on entry (so a
        publish after it is received) and closes on exit; ``async for m in
        client.subscribe(cid, token)`` connects on first use. Iteration ends when the channel
        is closed (close code 4000); any other close raises :class:`WebchannelError`, except
        that with ``get_token`` (a function or coroutine function returning a fresh token) a
        token that expired (close 4005) is replaced and the subscription reconnects.
        """
        url = _common.websocket_url(self._http.base_url, channel_id)
        return Subscription(url, token, self.timeout, get_token)

    async def renew(self, channel: Channel | str) -> Channel:
        """Fresh tokens for an existing channel (a create with its id, by the API key): for a
        task that outlives ``channel.ttl`` and publishes with the channel's token."""
        channel_id = channel.channel_id if isinstance(channel, Channel) else channel
        return await self.create_channel(channel_id)

    async def _send(self, call: _common.Call) -> httpx.Response:
        """Send ``call``; again after a 503 or a failure to connect, at most ``retries`` times."""
        request = self._http.build_request(
            call.method,
            call.path,
            headers=call.headers,
            content=call.content,
            params=call.params,
            timeout=self.timeout + call.extra_timeout,
        )
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                if last or not _common.is_connect_failure(exc):
                    raise error_from_transport(exc, str(request.url)) from exc
                await asyncio.sleep(_common.backoff_delay(attempt))
                continue
            if last or not _common.should_retry(response):
                return response
            await asyncio.sleep(_common.backoff_delay(attempt, response.headers.get("Retry-After")))
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises
