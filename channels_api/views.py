"""HTTP endpoints: create a channel, publish to it, read its subscribers, close it; health,
readiness and metrics. Every rule about the message itself lives in :mod:`.publishing`; this
module only translates between HTTP and it (credentials, the path and body, problem+json)."""

from __future__ import annotations

import base64
import json
import logging
import re
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from . import metrics
from .auth import ApiKey, bearer_token, credentials_match, verify_grant
from .events import RelayClose, RelayMessage, RequestState, relay_close
from .exceptions import (
    InvalidChannelId,
    InvalidToken,
    LayerUnavailable,
    Problem,
    RateLimited,
    ScopeDenied,
    WrongChannel,
)
from .logs import REQUEST, note_key
from .names import channel_id_from_url, group_name, validate_channel_id
from .problems import API_KEY_CHALLENGE, BEARER_CHALLENGE, api_view
from .publishing import MessageTooLarge, message, new_channel_for_key, send_to_channel
from .runtime import Runtime, runtime

logger = logging.getLogger(__name__)


def _authenticated_key(request: HttpRequest) -> ApiKey:
    """The API key of the request's ``x-api-key`` (401 without one or for an unknown one)."""
    presented = request.headers.get("x-api-key")
    if not presented:
        raise Problem(HTTPStatus.UNAUTHORIZED, "an x-api-key header is required", headers=API_KEY_CHALLENGE)
    entry = runtime().config.keyring.find(presented)
    if entry is None:
        raise _key_not_accepted()
    note_key(request.scope, entry.name)  # type: ignore[attr-defined]  # the access log names the key
    return entry


MAX_SHOWN_ID_LENGTH = 64
"""Longer channel ids are cut in error messages: a client's id is echoed, but not unbounded."""


def _shown_id(channel_id: str) -> str:
    if len(channel_id) <= MAX_SHOWN_ID_LENGTH:
        return repr(channel_id)
    return f"{channel_id[:MAX_SHOWN_ID_LENGTH]!r}... ({len(channel_id)} characters)"


def _authorize_key(entry: ApiKey, action: str, channel_id: str | None) -> None:
    """The one rule for an API key on every route: may ``entry`` do ``action`` on ``channel_id``?
    403 without the scope, or for an id outside the key's prefixes; ``channel_id`` is None for
    a create that lets the key's first prefix start the generated id."""
    if action not in entry.scopes:
        raise Problem(HTTPStatus.FORBIDDEN, f"this API key lacks the {action!r} scope")
    if channel_id is not None and not entry.allows_channel(channel_id):
        raise Problem(HTTPStatus.FORBIDDEN, f"this API key may not use channel {_shown_id(channel_id)}")
    metrics.api_requests.labels(key=entry.name, action=action).inc()


def _key_not_accepted() -> Problem:
    return Problem(HTTPStatus.UNAUTHORIZED, "the x-api-key was not accepted", headers=API_KEY_CHALLENGE)


def _requested_channel_id(body: bytes) -> str | None:
    """The id asked for in a create body (empty, ``{}`` or ``{"channelId": "..."}``), or None."""
    if not body.strip():
        return None
    try:
        # JSON between systems is UTF-8 (RFC 8259); json.loads would also guess UTF-16/32.
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise Problem(HTTPStatus.BAD_REQUEST, "body must be empty or a UTF-8 JSON object") from None
    if not isinstance(document, dict):
        raise Problem(HTTPStatus.BAD_REQUEST, "body must be empty or a JSON object")
    unknown = sorted(set(document) - {"channelId"})
    if unknown:
        raise Problem(HTTPStatus.BAD_REQUEST, f"unknown field {unknown[0]!r}; only channelId is accepted")
    if "channelId" not in document:
        return None
    channel_id = document["channelId"]
    if not isinstance(channel_id, str):
        raise Problem(HTTPStatus.BAD_REQUEST, "channelId must be a string")
    try:
        return validate_channel_id(channel_id)
    except InvalidChannelId as exc:
        raise Problem(HTTPStatus.BAD_REQUEST, str(exc)) from None


@api_view("POST")
async def create_channel(request: HttpRequest) -> HttpResponse:
    """Issue tokens for the requested channel id, or for a new one (within the key's prefixes)."""
    entry = _authenticated_key(request)
    if "create" not in entry.scopes:  # refused before the body is looked at
        _authorize_key(entry, "create", None)
    channel_id = _requested_channel_id(request.body)
    _authorize_key(entry, "create", channel_id)
    return JsonResponse(new_channel_for_key(entry, channel_id))  # its subscribeToken too


def _path_channel_id(request: HttpRequest, channel_id: str) -> str:
    try:
        return channel_id_from_url(channel_id, request.scope.get("raw_path"))  # type: ignore[attr-defined]
    except InvalidChannelId as exc:
        raise Problem(HTTPStatus.BAD_REQUEST, str(exc)) from None


def _require_publisher(request: HttpRequest, channel_id: str, action: str = "publish") -> str | None:
    """Accept an API key, or a Bearer token for this very channel, that may do ``action`` on it.

    ``action`` is ``publish``, ``info`` or ``close``. When a valid API key is presented it
    decides (403 without the scope or outside its prefixes), whatever else the request carries.
    A token minted by a named key puts that key's name in the access log, as the key would.
    Returns the name of the API key, or of the named key that minted the token, if any.
    """
    config = runtime().config
    key = request.headers.get("x-api-key")
    if key and (entry := config.keyring.find(key)) is not None:
        note_key(request.scope, entry.name)  # type: ignore[attr-defined]
        _authorize_key(entry, action, channel_id)
        return entry.name
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        if key:
            raise _key_not_accepted()
        raise Problem(
            HTTPStatus.UNAUTHORIZED,
            "an Authorization: Bearer token or x-api-key is required",
            headers=BEARER_CHALLENGE,
        )
    try:
        grant = verify_grant(token, config.secret_keys, config.keyring)
        if grant.key_name is not None:
            note_key(request.scope, grant.key_name)  # type: ignore[attr-defined]
        grant.check(channel_id, action)
    except (WrongChannel, ScopeDenied) as exc:
        raise Problem(HTTPStatus.FORBIDDEN, str(exc)) from None
    except InvalidToken as exc:
        raise Problem(HTTPStatus.UNAUTHORIZED, str(exc), headers=BEARER_CHALLENGE) from None
    return grant.key_name


async def publish(request: HttpRequest, channel_id: str) -> HttpResponse:
    """Relay the request body, unchanged, to every subscriber of the channel."""
    channel_id = _path_channel_id(request, channel_id)
    key_name = _require_publisher(request, channel_id)
    state = runtime()
    wait = _wait_seconds(request)
    if wait is not None and state.presence.waiting >= state.config.server.max_waiting_publishes:
        raise Problem(HTTPStatus.TOO_MANY_REQUESTS, _TOO_MANY_WAITING, headers=_RETRY_SOON)
    if key_name is not None:
        _admit(state, key_name)
    group = group_name(channel_id)
    found = 0 if wait is None else await state.presence.wait_for_listener(group, wait)
    subscribers = max(found, state.presence.count(group))  # a dict lookup: other processes' counts are cached
    await _send(request, state, channel_id, message(request.body))
    return _no_content(subscribers)


async def _send(request: HttpRequest, state: Runtime, channel_id: str, event: RelayMessage | RelayClose) -> None:
    """:func:`~channels_api.publishing.send_to_channel`, its errors as problems."""
    try:
        await send_to_channel(state, channel_id, event, _request_state(request))
    except MessageTooLarge as exc:
        raise Problem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
    except LayerUnavailable as exc:
        raise Problem(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None


def _admit(state: Runtime, key_name: str) -> None:
    """Count the publish against its key's ``max_publish_rate`` (a dict lookup for a key without one)."""
    try:
        state.rates.admit(key_name)
    except RateLimited as exc:
        metrics.publishes_rate_limited.labels(key=key_name).inc()
        raise Problem(HTTPStatus.TOO_MANY_REQUESTS, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None


def _request_state(request: HttpRequest) -> RequestState | None:
    """The request's ``webchannel.request`` extension: under webchannel's server."""
    extensions = request.scope.get("extensions")  # type: ignore[attr-defined]
    return extensions.get(REQUEST) if extensions else None


SUBSCRIBERS_HEADER = "Webchannel-Subscribers"
MAX_WAIT_SECONDS = 30.0
_TOO_MANY_WAITING = "too many publishes are waiting for a subscriber in this process; retry shortly"
_RETRY_SOON = {"Retry-After": "1"}
_WAIT_VALUE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def _wait_seconds(request: HttpRequest) -> float | None:
    """``?wait=S`` of a publish: seconds (0 < S <= 30) to wait for a subscriber first, or None."""
    if not request.META.get("QUERY_STRING"):
        return None  # the usual publish: no query to parse
    values = request.GET.getlist("wait")
    if not values:
        return None
    text = values[0]
    seconds = float(text) if len(values) == 1 and _WAIT_VALUE.fullmatch(text) else 0.0
    if not 0 < seconds <= MAX_WAIT_SECONDS:
        raise Problem(HTTPStatus.BAD_REQUEST, f"wait must be a number of seconds, > 0 and <= {MAX_WAIT_SECONDS:g}")
    return seconds


def _no_content(subscribers: int) -> HttpResponse:
    """204 with the number of subscribers (in every process) the message or close was sent to."""
    response = HttpResponse(status=HTTPStatus.NO_CONTENT)
    del response["Content-Type"]  # there is no content
    response[SUBSCRIBERS_HEADER] = str(subscribers)
    return response


async def channel_info(request: HttpRequest, channel_id: str) -> HttpResponse:
    """How many subscribers the channel has, in every process (other processes asked now)."""
    channel_id = _path_channel_id(request, channel_id)
    _require_publisher(request, channel_id, "info")
    state = runtime()
    state.serve()
    subscribers = await state.presence.count_now(group_name(channel_id))
    response = JsonResponse({"channelId": channel_id, "subscribers": subscribers})
    response["Cache-Control"] = "no-store"
    return response


async def close_channel(request: HttpRequest, channel_id: str) -> HttpResponse:
    """Deliver the body (if any) as the last message, then close every subscriber with 4000.

    Nothing is stored: a subscriber that connects afterwards is not affected.
    """
    channel_id = _path_channel_id(request, channel_id)
    _require_publisher(request, channel_id, "close")
    state = runtime()
    subscribers = state.presence.count(group_name(channel_id))
    await _send(request, state, channel_id, relay_close(request.body or None))
    return _no_content(subscribers)


_CHANNEL_VIEWS = {"GET": channel_info, "POST": publish, "DELETE": close_channel}


@api_view("GET", "POST", "DELETE")
async def channel(request: HttpRequest, channel_id: str) -> HttpResponse:
    """``/webchannel/v1/channels/{id}`` over plain HTTP: info (GET), publish (POST), close (DELETE)."""
    return await _CHANNEL_VIEWS[str(request.method)](request, channel_id)


@api_view("GET", "HEAD")
async def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive."""
    return HttpResponse("OK", content_type="text/plain")


@api_view("GET", "HEAD")
async def readyz(request: HttpRequest) -> HttpResponse:
    """A message published through the channel layer came back to this process (within the last second)."""
    state = runtime()
    try:
        await state.readiness.check(state.layer)
    except LayerUnavailable as exc:
        raise Problem(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None
    return HttpResponse("OK", content_type="text/plain")


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header; None when it is absent or unreadable."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except ValueError:  # not base64 (binascii.Error), not ASCII text to decode, or not UTF-8 inside
        return None
    return (user, password) if sep else None


def _require_metrics_auth(request: HttpRequest) -> None:
    config = runtime().config.metrics
    if not config.auth_enabled:
        return
    user, password = _basic_credentials(request.headers.get("authorization")) or ("", "")
    # Both comparisons always run, so timing tells nothing about which part was wrong.
    user_ok = credentials_match(user, config.auth_username or "")
    password_ok = credentials_match(password, config.auth_password or "")
    if not (user_ok and password_ok):
        raise Problem(
            HTTPStatus.UNAUTHORIZED,
            "metrics require HTTP Basic authentication",
            headers={"WWW-Authenticate": 'Basic realm="webchannel metrics", charset="UTF-8"'},
        )


@api_view("GET")
async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition: this process's metrics, or the whole server's under workers."""
    _require_metrics_auth(request)
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
