"""The one exception the client raises, and how HTTP answers and transport failures become it.

Exception tree::

    WebchannelError            every failure: an HTTP error answer (status set), a failure
                               to reach the server (status None), an abnormal WebSocket close
                               (close_code set)
"""

from __future__ import annotations

import json
from http import HTTPStatus

import httpx

_MAX_DETAIL = 300  # characters of a non-JSON body kept as the detail


class WebchannelError(Exception):
    """A request the server refused or that never got an answer.

    ``status`` is the HTTP status (``None`` when no HTTP answer arrived); ``title`` and
    ``detail`` come from the server's ``application/problem+json`` body when it sent one.
    ``close_code`` is set when a subscription ended with an unexpected WebSocket close code.
    """

    def __init__(self, status: int | None, title: str, detail: str | None = None, close_code: int | None = None):
        self.status = status
        self.title = title
        self.detail = detail
        self.close_code = close_code
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{self.status} {self.title}" if self.status is not None else self.title
        return f"{head}: {self.detail}" if self.detail else head

    def __repr__(self) -> str:
        return f"WebchannelError(status={self.status!r}, title={self.title!r}, detail={self.detail!r})"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def error_from_body(status: int, body: bytes, content_type: str = "") -> WebchannelError:
    """The error for an HTTP answer: problem+json fields when present, else the status phrase and a body excerpt."""
    document: object = None
    if "json" in content_type.lower():
        try:
            document = json.loads(body)
        except ValueError:
            document = None
    if isinstance(document, dict):
        title = document.get("title")
        detail = document.get("detail")
        return WebchannelError(
            status,
            title if isinstance(title, str) and title else _phrase(status),
            detail if isinstance(detail, str) and detail else None,
        )
    text = body.decode("utf-8", errors="replace").strip()
    return WebchannelError(status, _phrase(status), text[:_MAX_DETAIL] or None)


def error_from_response(response: httpx.Response) -> WebchannelError:
    """The error for an httpx response whose body has been read."""
    return error_from_body(response.status_code, response.content, response.headers.get("content-type", ""))


def error_from_transport(exc: Exception, url: str) -> WebchannelError:
    """The error for a request that got no HTTP answer (refused connection, timeout, reset)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | OSError):
        title = "Cannot connect"
    elif isinstance(exc, httpx.TimeoutException | TimeoutError):
        title = "Timed out"
    else:
        title = "Connection failed"
    reason = str(exc) or type(exc).__name__
    return WebchannelError(None, title, f"{url}: {reason}")
