"""Channel ids: the rules every endpoint enforces, and their mapping to channel-layer groups."""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import unicodedata
from urllib.parse import unquote_to_bytes

from .exceptions import InvalidChannelId

__all__ = [
    "InvalidChannelId",
    "channel_id_from_url",
    "generate_channel_id",
    "group_name",
    "validate_channel_id",
]

MAX_CHANNEL_ID_LENGTH = 128
GENERATED_ID_BYTES = 16  # 128 bits of randomness -> 22 URL-safe characters
GROUP_PREFIX = "wc."


CACHED_IDS = 4096
"""Recently seen valid ids keep their check and group name: a channel is published to again and again."""


@functools.lru_cache(maxsize=CACHED_IDS)
def validate_channel_id(channel_id: str) -> str:
    """Return ``channel_id`` if it is 1-128 characters without ``/``, whitespace or controls."""
    if not 1 <= len(channel_id) <= MAX_CHANNEL_ID_LENGTH:
        raise InvalidChannelId(
            f"channel id must be 1 to {MAX_CHANNEL_ID_LENGTH} characters long, got {len(channel_id)}"
        )
    for char in channel_id:
        if char == "/":
            raise InvalidChannelId("channel id must not contain '/'")
        if char.isspace():
            raise InvalidChannelId("channel id must not contain whitespace")
        # Cc: control characters; Cs: lone surrogates, which no UTF-8 text can carry.
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidChannelId("channel id must not contain control characters")
    return channel_id


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def channel_id_from_url(decoded: str, raw_path: bytes | None) -> str:
    """The channel id of a URL, checked: ``decoded`` as routed, ``raw_path`` as the client sent it.

    Servers percent-decode the path leniently (Daphne and uvicorn turn ``%FF`` into U+FFFD
    and keep ``%ZZ`` as it is), so a malformed id would pass for another, valid one. The raw
    path (the ASGI ``raw_path``; None when the server does not give it) must be strictly
    valid percent-encoded UTF-8; the decoded id then obeys the usual rules.
    """
    if raw_path is not None and b"%" in raw_path:
        if _BAD_ESCAPE.search(raw_path):
            raise InvalidChannelId("the channel id in the URL has a '%' not followed by two hex digits")
        try:
            unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidChannelId("the channel id in the URL is not percent-encoded UTF-8") from None
    return validate_channel_id(decoded)


def generate_channel_id() -> str:
    """A fresh random, URL-safe channel id."""
    return secrets.token_urlsafe(GENERATED_ID_BYTES)


@functools.lru_cache(maxsize=CACHED_IDS)
def group_name(channel_id: str) -> str:
    """Map a valid channel id to a channel-layer group name.

    Group names allow only ASCII letters, digits, ``-``, ``_``, ``.`` and fewer than 100
    characters, while ids allow any Unicode; a SHA-256 digest keeps the mapping one-to-one
    in practice and the name 67 characters long.
    """
    return GROUP_PREFIX + hashlib.sha256(channel_id.encode("utf-8")).hexdigest()
