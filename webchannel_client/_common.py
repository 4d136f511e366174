"""What the sync and async clients share: how each call is made, and when to try again.

Both clients build a :class:`Call` here and run it with the same retry rule, so they cannot
drift apart; only the waiting and the I/O differ.
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from .errors import WebchannelError, error_from_response
from .models import Channel

API_PREFIX = "/webchannel/v1/channels"
SUBSCRIBERS_HEADER = "Webchannel-Subscribers"
BASE_DELAY = 0.1  # seconds before the first retry; doubles each time
MAX_DELAY = 2.0  # a retry never waits longer than this, whatever the server asks
USER_AGENT = "webchannel-client"

Data = bytes | bytearray | memoryview | str
"""A message body; text is sent as UTF-8."""


@dataclass(frozen=True)
class Call:
    """One HTTP request of the API, before it is sent."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # the API key or token
    content: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    extra_timeout: float = 0.0  # a ?wait= request may be answered that much later


def channel_path(channel_id: str) -> str:
    """The path of one channel, its id percent-encoded (``/`` and ``%`` included)."""
    return f"{API_PREFIX}/{quote(channel_id, safe='')}"


def to_bytes(data: Data) -> bytes:
    """A message body: text is sent as UTF-8."""
    return data.encode() if isinstance(data, str) else bytes(data)


def auth_headers(api_key: str | None, token: str | None = None) -> dict[str, str]:
    """A channel token as ``Authorization: Bearer`` when given, else the API key (if any)."""
    if token is not None:
        return {"Authorization": f"Bearer {token}"}
    return {"x-api-key": api_key} if api_key is not None else {}


def create_call(api_key: str | None, channel_id: str | None) -> Call:
    body = b"" if channel_id is None else json.dumps({"channelId": channel_id}).encode()
    headers = auth_headers(api_key)
    if body:
        headers["Content-Type"] = "application/json"
    return Call("POST", API_PREFIX, headers, body)


def publish_call(api_key: str | None, channel_id: str, data: Data, token: str | None, wait: float | None) -> Call:
    params = {} if wait is None else {"wait": _seconds(wait)}
    headers = {**auth_headers(api_key, token), "Content-Type": "application/octet-stream"}
    return Call("POST", channel_path(channel_id), headers, to_bytes(data), params, wait or 0.0)


def info_call(api_key: str | None, channel_id: str) -> Call:
    return Call("GET", channel_path(channel_id), auth_headers(api_key))


def close_call(api_key: str | None, channel_id: str, final: Data | None) -> Call:
    content = None if final is None else to_bytes(final)
    return Call("DELETE", channel_path(channel_id), auth_headers(api_key), content)


def _seconds(wait: float) -> str:
    if wait < 0:
        raise ValueError(f"wait must be >= 0 seconds, not {wait!r}")
    return str(int(wait)) if float(wait).is_integer() else str(wait)


def is_connect_failure(exc: Exception) -> bool:
    """The request never reached the server, so sending it again cannot duplicate it."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def should_retry(response: httpx.Response) -> bool:
    """Only 503 (the server could not take it, nothing was done) is worth another try."""
    return response.status_code == 503


def backoff_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds before retry number ``attempt`` (0-based): exponential, half of it jittered."""
    ceiling = min(MAX_DELAY, BASE_DELAY * 2**attempt)
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not a secret)
    if retry_after is not None:
        with contextlib.suppress(ValueError):  # an HTTP date: the exponential delay will do
            delay = max(delay, min(MAX_DELAY, float(retry_after)))
    return delay


def subscribers(response: httpx.Response) -> int | None:
    """The ``Webchannel-Subscribers`` count, ``None`` when the server did not send one."""
    value = response.headers.get(SUBSCRIBERS_HEADER)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def checked(response: httpx.Response) -> httpx.Response:
    """``response`` if it is a success, else its :class:`WebchannelError`."""
    if response.is_success:
        return response
    raise error_from_response(response)


def channel_from(response: httpx.Response) -> Channel:
    try:
        document = checked(response).json()
    except ValueError:
        raise WebchannelError(response.status_code, "Unexpected response", "the body is not JSON") from None
    return Channel.from_json(document)


def info_from(response: httpx.Response) -> int:
    try:
        count = checked(response).json().get("subscribers")
    except (ValueError, AttributeError):
        count = None
    if not isinstance(count, int):
        raise WebchannelError(response.status_code, "Unexpected response", "no subscriber count in the answer")
    return count


def websocket_url(base_url: httpx.URL, channel_id: str) -> str:
    """The subscribe URL for ``channel_id`` on the server at ``base_url`` (http→ws, https→wss)."""
    scheme = "wss" if base_url.scheme == "https" else "ws"
    return str(base_url.copy_with(scheme=scheme).join(channel_path(channel_id).lstrip("/")))
