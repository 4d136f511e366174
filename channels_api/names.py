"""Channel ids: the rules every endpoint enforces, and their mapping to channel-layer groups."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata

MAX_CHANNEL_ID_LENGTH = 128
GENERATED_ID_BYTES = 16  # 128 bits of randomness -> 22 URL-safe characters
GROUP_PREFIX = "wc."


class InvalidChannelId(ValueError):
    """The text cannot be a channel id; the message says which rule it breaks."""


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


def generate_channel_id() -> str:
    """A fresh random, URL-safe channel id."""
    return secrets.token_urlsafe(GENERATED_ID_BYTES)


def group_name(channel_id: str) -> str:
    """Map a valid channel id to a channel-layer group name.

    Group names allow only ASCII letters, digits, ``-``, ``_``, ``.`` and fewer than 100
    characters, while ids allow any Unicode; a SHA-256 digest keeps the mapping one-to-one
    in practice and the name 67 characters long.
    """
    return GROUP_PREFIX + hashlib.sha256(channel_id.encode("utf-8")).hexdigest()
