"""Every error webchannel raises on purpose, under one root.

.. code-block:: text

    WebchannelError
    ├── ConfigError             a bad configuration: one line for the operator, exit status 2
    ├── TokenError              the presented token grants no access
    │   ├── InvalidToken        missing, malformed, wrongly signed or not yet valid: 401
    │   │   └── ExpiredToken    correctly signed, but past its expiry: 401
    │   └── WrongChannel        valid, but for another channel: 403
    ├── ScopeDenied             a valid token or API key that does not allow the action: 403
    ├── InvalidChannelId        the text (or its percent-encoding in a URL) cannot be a channel id
    ├── LayerUnavailable        the channel layer did not carry a message (Redis down or wedged)
    ├── RateLimited             a key published past its max_publish_rate: 429 with Retry-After
    └── Problem                 an HTTP error with its status, answered as problem+json

Messages are written to be shown: a token error's to the client, a config error's to the
operator; none carries a secret. A refused subscribe is counted under the exception's
``refusal``, a :class:`~channels_api.events.RefusalReason` whose value is the metric label,
so renaming a class does not change a dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import ClassVar

from .events import RefusalReason


class WebchannelError(Exception):
    """The root of webchannel's own errors."""


class ConfigError(WebchannelError):
    """A configuration problem, worded as one line naming the source, the key and what was expected."""


class TokenError(WebchannelError):
    """The presented token does not grant access; the message is safe to show the client."""

    refusal: ClassVar[RefusalReason] = RefusalReason.INVALID_TOKEN


class InvalidToken(TokenError):
    """Missing, malformed, not yet valid or wrongly signed: the caller is not authenticated."""


class ExpiredToken(InvalidToken):
    """Correctly signed but expired: the caller should ask its backend for a fresh token."""

    refusal = RefusalReason.EXPIRED_TOKEN


class WrongChannel(TokenError):
    """A valid token, but for another channel: authenticated, not authorised."""

    refusal = RefusalReason.WRONG_CHANNEL


class ScopeDenied(WebchannelError):
    """A valid credential whose scope does not include the action asked for: authenticated, not authorised.

    Not a :class:`TokenError`: it never refuses a subscribe (every token may subscribe),
    and it applies to API keys as well.
    """


class InvalidChannelId(WebchannelError, ValueError):
    """The text cannot be a channel id; the message says which rule it breaks."""

    refusal: ClassVar[RefusalReason] = RefusalReason.INVALID_CHANNEL_ID


class LayerUnavailable(WebchannelError):
    """The channel layer did not take a message, or did not carry a probe back in time."""

    refusal: ClassVar[RefusalReason] = RefusalReason.LAYER_UNAVAILABLE


class RateLimited(WebchannelError):
    """The key that authenticated a publish (or minted its token) has used up its
    ``max_publish_rate`` for the current window; ``retry_after``: whole seconds until it ends."""

    def __init__(self, span: int, allowed: int, retry_after: int) -> None:
        window = "second" if span == 1 else f"{span} seconds"
        messages = "message" if allowed == 1 else "messages"
        super().__init__(f"this key may publish {allowed} {messages} per {window}; retry after {retry_after} s")
        self.retry_after = retry_after


class Problem(WebchannelError):
    """An HTTP error a view raises; :func:`channels_api.problems.problem_response` renders it."""

    def __init__(
        self,
        status: HTTPStatus,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or status.phrase)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
