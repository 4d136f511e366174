"""The values the client returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import WebchannelError


@dataclass(frozen=True)
class Channel:
    """A created channel: its id, a full token (publish, close, subscribe), and a subscribe-only token.

    ``subscribe_token`` is ``None`` when the server does not issue one; ``expires_at`` is when
    both tokens expire (timezone-aware), ``None`` if the server did not say.
    """

    channel_id: str
    token: str = field(repr=False)
    subscribe_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None

    @classmethod
    def from_json(cls, document: Any) -> Channel:
        """Read the create response (``channelId``, ``token``, ``subscribeToken``, ``expiresAt``)."""
        if not isinstance(document, dict):
            raise WebchannelError(200, "Unexpected response", "the create response is not a JSON object")
        channel_id, token = document.get("channelId"), document.get("token")
        if not isinstance(channel_id, str) or not isinstance(token, str):
            raise WebchannelError(200, "Unexpected response", "the create response lacks channelId or token")
        subscribe_token = document.get("subscribeToken")
        return cls(
            channel_id=channel_id,
            token=token,
            subscribe_token=subscribe_token if isinstance(subscribe_token, str) else None,
            expires_at=_timestamp(document.get("expiresAt")),
        )


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
