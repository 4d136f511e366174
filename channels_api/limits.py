"""Request body limits under other ASGI servers, enforced while the body streams in, before Django buffers it.

webchannel's own server refuses an oversized body from the request line and headers, before
reading it; this middleware does the same for any ASGI server. Both take the limit of a route
from the one route table (:func:`channels_api.routes.body_limit`).
"""

from __future__ import annotations

from http import HTTPStatus

from .asgi_types import ASGIApp, Message, Receive, Scope, Send
from .problems import send_problem
from .routes import body_limit


class BodyLimitMiddleware:
    """ASGI middleware: answer 413 as soon as a body is known to be too large.

    A ``Content-Length`` over the limit is refused before any of the body is read; a
    chunked body is counted as it arrives and, once past the limit, the application is
    told the client went away (so Django cleans up) and 413 is sent instead. Nothing is
    buffered beyond the limit.
    """

    def __init__(self, app: ASGIApp, max_message_size: int) -> None:
        self.app = app
        self.max_message_size = max_message_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope["method"], scope["path"], self.max_message_size)
        if limit is None:  # not webchannel's route: the host project's own limits apply
            return await self.app(scope, receive, send)
        try:
            declared = _content_length(scope)
        except ValueError:
            return await send_problem(
                send, HTTPStatus.BAD_REQUEST, "Content-Length must be a number of bytes", close=True
            )
        if declared is not None and declared > limit:
            return await _too_large(send, limit)
        received = 0
        too_large = False

        async def counted_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted_receive, send)
        if too_large:
            await _too_large(send, limit)


def _content_length(scope: Scope) -> int | None:
    """The declared body length; ValueError unless it is plain digits (RFC 9110 §8.6)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError(value)
            return int(value[-19:]) if len(value.lstrip(b"0")) <= 19 else 10**19  # no 5000-digit int()
    return None


async def _too_large(send: Send, limit: int) -> None:
    await send_problem(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body must be at most {limit} bytes", close=True)
