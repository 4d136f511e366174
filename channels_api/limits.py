"""Request body limits, enforced while the body streams in, before Django buffers it."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from django.conf import settings

from .config import CREATE_BODY_LIMIT
from .problems import PROBLEM_CONTENT_TYPE, problem_body

ASGIApp = Any
_CREATE_PATH = "/webchannel/v1/channels"
_CHANNEL_PATH = re.compile(r"/webchannel/v1/channels/.")
OTHER_BODY_LIMIT = 16 * 1024


def body_limit(method: str, path: str) -> int:
    """The largest body accepted for a request: ``channel.max_message_size`` for a publish, and
    for a close (whose body is the channel's last message)."""
    if method in ("POST", "DELETE") and _CHANNEL_PATH.match(path):
        return settings.WEBCHANNEL.channel.max_message_size  # type: ignore[no-any-return]
    if path == _CREATE_PATH:
        return CREATE_BODY_LIMIT
    return OTHER_BODY_LIMIT


class BodyLimitMiddleware:
    """ASGI middleware: answer 413 as soon as a body is known to be too large.

    A ``Content-Length`` over the limit is refused before any of the body is read; a
    chunked body is counted as it arrives and, once past the limit, the application is
    told the client went away (so Django cleans up) and 413 is sent instead. Nothing is
    buffered beyond the limit.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope["method"], scope["path"])
        try:
            declared = _content_length(scope)
        except ValueError:
            return await _send_problem(send, HTTPStatus.BAD_REQUEST, "Content-Length must be a number of bytes")
        if declared is not None and declared > limit:
            return await _too_large(send, limit)
        received = 0
        too_large = False

        async def counted_receive() -> dict[str, Any]:
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


def _content_length(scope: dict[str, Any]) -> int | None:
    """The declared body length; ValueError unless it is plain digits (RFC 9110 §8.6)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError(value)
            return int(value[-19:]) if len(value.lstrip(b"0")) <= 19 else 10**19  # no 5000-digit int()
    return None


async def _too_large(send: Any, limit: int) -> None:
    await _send_problem(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body must be at most {limit} bytes")


async def _send_problem(send: Any, status: HTTPStatus, detail: str) -> None:
    body = problem_body(status, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
