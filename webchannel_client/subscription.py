"""A WebSocket subscription to one channel, read as an async iterator of ``bytes``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import WebchannelError, error_from_body

CHANNEL_CLOSED = 4000
"""The close code of a channel closed by its publisher: the end of the stream, not an error."""

CLEAN_CLOSES = frozenset({1000, CHANNEL_CLOSED})
TOKEN_EXPIRED = 4005
"""The server closes a subscription when its token reaches its ``exp``."""

TokenSource = Callable[[], str | Awaitable[str]]
"""Gives a fresh token for the channel (a function or a coroutine function)."""


class Subscription:
    """Receive every message of a channel; the token travels in ``Authorization``, not in the URL.

    With ``get_token``, a subscription whose token expired (close 4005) fetches a fresh token
    and reconnects by itself; without it, that close raises like any other.
    """

    def __init__(self, url: str, token: str, timeout: float, get_token: TokenSource | None = None) -> None:
        self.url = url
        self._token = token
        self._timeout = timeout
        self._get_token = get_token
        self._ws: ClientConnection | None = None
        self._done = False

    async def connect(self) -> None:
        """Open the socket (a no-op when open): once it returns, the server delivers to it."""
        if self._ws is not None:
            return
        try:
            self._ws = await connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self._token}"},
                open_timeout=self._timeout,
                max_size=None,  # the server bounds message sizes (channel.max_message_size)
                user_agent_header="webchannel-client",
            )
        except InvalidStatus as exc:
            response = exc.response
            raise error_from_body(
                response.status_code, bytes(response.body or b""), response.headers.get("Content-Type", "")
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            title = "Timed out" if isinstance(exc, TimeoutError) else "Cannot connect"
            raise WebchannelError(None, title, f"{self.url}: {exc or type(exc).__name__}") from exc

    async def aclose(self) -> None:
        """Close the socket; iteration then ends."""
        self._done = True
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self) -> Subscription:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._done:
                raise StopAsyncIteration
            await self.connect()
            assert self._ws is not None
            try:
                message = await self._ws.recv()
            except ConnectionClosed as exc:
                if await self._renewed(exc):
                    continue
                self._end(exc)
                raise StopAsyncIteration from None
            return message.encode() if isinstance(message, str) else message

    async def _renewed(self, exc: ConnectionClosed) -> bool:
        """After a 4005 close, with ``get_token``: a fresh token is in place for the next connect."""
        if self._done or self._get_token is None or exc.rcvd is None or exc.rcvd.code != TOKEN_EXPIRED:
            return False
        token = self._get_token()
        self._token = await token if inspect.isawaitable(token) else token
        self._ws = None
        return True

    def _end(self, exc: ConnectionClosed) -> None:
        """Return on a clean end (channel closed, normal closure, or closed by us); raise on any other close."""
        if self._done:
            return
        self._done = True
        code = exc.rcvd.code if exc.rcvd is not None else None
        if code in CLEAN_CLOSES:
            return
        reason = exc.rcvd.reason if exc.rcvd is not None and exc.rcvd.reason else None
        detail = f"close code {code}" if code is not None else "the connection was lost without a close frame"
        raise WebchannelError(
            None, "Subscription closed", f"{detail}: {reason}" if reason else detail, close_code=code
        ) from exc
