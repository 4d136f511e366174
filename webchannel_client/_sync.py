"""The synchronous client: one pooled httpx connection set per :class:`Client`."""

from __future__ import annotations

import time
from types import TracebackType

import httpx

from . import _common
from .errors import error_from_transport
from .models import Channel


class Client:
    """Create channels, publish, count subscribers and close channels on one webchannel server.

    ``api_key`` authenticates every call that is not given a channel token. ``timeout`` (seconds)
    bounds connecting and each read; ``retries`` is how many times a call is sent again after a
    503 or a failure to connect, with jittered exponential backoff. Use it as a context manager,
    or call :meth:`close`, so its connections are released.
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 10.0, retries: int = 3) -> None:
        if retries < 0 or timeout <= 0:
            raise ValueError(f"retries must be >= 0 and timeout > 0, not {retries!r} and {timeout!r}")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers={"User-Agent": _common.USER_AGENT}, follow_redirects=False
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the pooled connections."""
        self._http.close()

    def create_channel(self, channel_id: str | None = None) -> Channel:
        """Create a channel (a random id unless ``channel_id`` is given) and return its tokens."""
        return _common.channel_from(self._send(_common.create_call(self.api_key, channel_id)))

    def renew(self, channel: Channel | str) -> Channel:
        """Fresh tokens for an existing channel (a create with its id, by the API key): for a
        task that outlives ``channel.ttl`` and publishes with the channel's token."""
        channel_id = channel.channel_id if isinstance(channel, Channel) else channel
        return self.create_channel(channel_id)

    def publish(
        self,
        channel_id: str,
        data: bytes | bytearray | memoryview | str,
        token: str | None = None,
        wait: float | None = None,
    ) -> int | None:
        """Send ``data`` to every subscriber; the number it was sent to, if the server says.

        ``token`` (the channel's full token) is used instead of the API key when given;
        ``wait`` asks the server to wait up to that many seconds for a first subscriber.
        """
        response = _common.checked(self._send(_common.publish_call(self.api_key, channel_id, data, token, wait)))
        return _common.subscribers(response)

    def info(self, channel_id: str) -> int:
        """How many subscribers the channel has, across every server process."""
        return _common.info_from(self._send(_common.info_call(self.api_key, channel_id)))

    def close_channel(self, channel_id: str, final: bytes | bytearray | memoryview | str | None = None) -> int:
        """Deliver ``final`` (if any) as the last message, then close every subscriber; how many there were."""
        response = _common.checked(self._send(_common.close_call(self.api_key, channel_id, final)))
        return _common.subscribers(response) or 0

    def _send(self, call: _common.Call) -> httpx.Response:
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
                response = self._http.send(request)
            except httpx.TransportError as exc:
                if last or not _common.is_connect_failure(exc):
                    raise error_from_transport(exc, str(request.url)) from exc
                time.sleep(_common.backoff_delay(attempt))
                continue
            if last or not _common.should_retry(response):
                return response
            response.close()
            time.sleep(_common.backoff_delay(attempt, response.headers.get("Retry-After")))
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises
