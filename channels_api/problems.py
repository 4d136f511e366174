"""The one mapping from errors to RFC 7807 ``application/problem+json`` responses.

:func:`problem_body` builds every problem document webchannel sends, whoever sends it: a Django
view (:func:`problem_response`, :func:`api_view`), an ASGI middleware below Django
(:func:`send_problem`), or the server's own protocols writing raw HTTP (:func:`problem_message`).

Relies on one internal of Django (declared in ``INTERNALS``, verified by the ``channels_api.E001``
system check): a response whose ``_has_been_logged`` attribute is set is not logged again by
``django.utils.log.log_response``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from http import HTTPStatus
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase

from .exceptions import Problem

__all__ = [
    "API_KEY_CHALLENGE",
    "BEARER_CHALLENGE",
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "api_view",
    "problem_body",
    "problem_message",
    "problem_response",
    "send_problem",
]

INTERNALS = (("django", "django.utils.log", "_has_been_logged", "log_response"),)

PROBLEM_CONTENT_TYPE = "application/problem+json"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="webchannel"'}
"""What a 401 answers when a channel token was expected (publishing, reading info, subscribing)."""
API_KEY_CHALLENGE = {"WWW-Authenticate": 'ApiKey realm="webchannel", header="x-api-key"'}
"""What a 401 answers when an API key was expected (creating a channel)."""


def problem_body(status: HTTPStatus, detail: str | None = None) -> bytes:
    """The JSON document for ``status``: ``type``, ``title``, ``status`` and ``detail``."""
    document: dict[str, object] = {"type": "about:blank", "title": status.phrase, "status": status.value}
    if detail:
        document["detail"] = detail
    return json.dumps(document).encode()


def problem_message(status: HTTPStatus, detail: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete HTTP/1.1 problem+json response that closes the connection, for the server's
    protocols to write themselves (below Django). The status line carries the standard reason
    phrase only, never text the client sent."""
    body = problem_body(status, detail)
    head = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {PROBLEM_CONTENT_TYPE}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


async def send_problem(
    send: Callable[[dict[str, Any]], Awaitable[None]], status: HTTPStatus, detail: str, *, close: bool = False
) -> None:
    """Answer an ASGI HTTP request with a problem (``close``: and ask for the connection to close)."""
    body = problem_body(status, detail)
    headers = [(b"content-type", PROBLEM_CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def problem_response(problem: Problem) -> HttpResponse:
    """Render a :class:`Problem` for Django."""
    response = HttpResponse(
        problem_body(problem.status, problem.detail),
        status=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in problem.headers.items():
        response[name] = value
    # An expected answer, already in the access log: keep django.request from logging it
    # (and from a thread hop to do it).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


AsyncView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def api_view(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """Wrap an async view: refuse other methods with 405 and render raised :class:`Problem`\\ s."""

    def decorate(view: AsyncView) -> AsyncView:
        allow = ", ".join(methods)

        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            try:
                if request.method not in methods:
                    raise Problem(HTTPStatus.METHOD_NOT_ALLOWED, f"use {allow}", headers={"Allow": allow})
                return await view(request, *args, **kwargs)
            except Problem as problem:
                return problem_response(problem)

        return wrapper

    return decorate


def _handler(status: HTTPStatus, detail: str) -> Callable[..., HttpResponse]:
    def handler(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        return problem_response(Problem(status, detail))

    return handler


# Django's error handlers (urls.py), so even unrouted paths answer in problem+json.
bad_request = _handler(HTTPStatus.BAD_REQUEST, "the request could not be understood")
permission_denied = _handler(HTTPStatus.FORBIDDEN, "access denied")
not_found = _handler(HTTPStatus.NOT_FOUND, "no such resource")


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500: an unexpected exception, answered in problem+json.

    Unlike every other problem, not marked as logged: Django's handler then logs it once,
    at ERROR on ``django.request`` with its traceback.
    """
    body = problem_body(HTTPStatus.INTERNAL_SERVER_ERROR, "unexpected server error")
    return HttpResponse(body, status=HTTPStatus.INTERNAL_SERVER_ERROR, content_type=PROBLEM_CONTENT_TYPE)
