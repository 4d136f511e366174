"""webchannel_client's pure parts: errors from answers, the retry rule, backoff, paths and headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from webchannel_client import AsyncClient, Channel, Client, WebchannelError
from webchannel_client import _common as common
from webchannel_client.errors import error_from_response, error_from_transport


def response(status: int, body: bytes = b"", content_type: str = "", **headers: str) -> httpx.Response:
    if content_type:
        headers["content-type"] = content_type
    return httpx.Response(status, content=body, headers=headers)


def problem(status: int, title: str, detail: str | None = None) -> httpx.Response:
    document = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        document["detail"] = detail
    return response(status, json.dumps(document).encode(), "application/problem+json")


def test_problem_json_gives_status_title_and_detail():
    error = error_from_response(problem(413, "Request Entity Too Large", "the body is 600000 bytes"))
    assert (error.status, error.title, error.detail) == (413, "Request Entity Too Large", "the body is 600000 bytes")
    assert str(error) == "413 Request Entity Too Large: the body is 600000 bytes"


def test_problem_without_detail_has_none():
    error = error_from_response(problem(401, "Unauthorized"))
    assert (error.status, error.title, error.detail) == (401, "Unauthorized", None)
    assert str(error) == "401 Unauthorized"


def test_non_json_body_gives_the_status_phrase_and_an_excerpt():
    error = error_from_response(response(502, b"<html>Bad gateway from the proxy</html>" + b"x" * 1000, "text/html"))
    assert (error.status, error.title) == (502, "Bad Gateway")
    assert error.detail is not None
    assert error.detail.startswith("<html>Bad gateway")
    assert len(error.detail) <= 300


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"not json", "application/json"), (b"[1, 2]", "application/problem+json"), (b"", "")],
    ids=["broken-json", "json-array", "empty"],
)
def test_bodies_that_are_not_problems_still_give_a_clear_error(body, content_type):
    error = error_from_response(response(503, body, content_type))
    assert (error.status, error.title) == (503, "Service Unavailable")


def test_an_unknown_status_has_a_generic_title():
    assert error_from_response(response(599)).title == "HTTP error"


def test_connection_errors_have_no_status():
    error = error_from_transport(httpx.ConnectError("[Errno 111] Connection refused"), "http://127.0.0.1:1/x")
    assert (error.status, error.title) == (None, "Cannot connect")
    assert error.detail == "http://127.0.0.1:1/x: [Errno 111] Connection refused"
    assert error_from_transport(httpx.ReadTimeout(""), "u").title == "Timed out"
    assert error_from_transport(httpx.RemoteProtocolError("gone"), "u").title == "Connection failed"


def test_only_503_is_retried():
    assert common.should_retry(response(503))
    for status in (200, 204, 400, 401, 403, 404, 413, 429, 500, 502, 504):
        assert not common.should_retry(response(status)), status


def test_only_failures_to_connect_are_retried():
    assert common.is_connect_failure(httpx.ConnectError("refused"))
    assert common.is_connect_failure(httpx.ConnectTimeout("slow"))
    # The request may have reached the server: sending a publish again could deliver it twice.
    for exc in (httpx.ReadTimeout(""), httpx.WriteError(""), httpx.RemoteProtocolError(""), httpx.ReadError("")):
        assert not common.is_connect_failure(exc), exc


def test_backoff_grows_is_jittered_and_capped():
    for attempt in range(8):
        ceiling = min(common.MAX_DELAY, common.BASE_DELAY * 2**attempt)
        delays = {common.backoff_delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    assert common.backoff_delay(0, retry_after="1") >= 1
    assert common.backoff_delay(0, retry_after="3600") <= common.MAX_DELAY
    assert common.backoff_delay(0, retry_after="Wed, 21 Oct 2015 07:28:00 GMT") <= common.BASE_DELAY


@pytest.mark.parametrize(
    ("channel_id", "path"),
    [("abc", "abc"), ("a/b", "a%2Fb"), ("a b?c#d", "a%20b%3Fc%23d"), ("100%", "100%25"), ("café", "caf%C3%A9")],
)
def test_channel_ids_are_percent_encoded_in_paths(channel_id, path):
    assert common.channel_path(channel_id) == f"/webchannel/v1/channels/{path}"


def test_websocket_url_keeps_the_base_path_and_scheme():
    url = common.websocket_url(httpx.URL("https://example.com/push/"), "a/b")
    assert url == "wss://example.com/push/webchannel/v1/channels/a%2Fb"
    assert (
        common.websocket_url(httpx.URL("http://127.0.0.1:8080/"), "x") == "ws://127.0.0.1:8080/webchannel/v1/channels/x"
    )


def test_a_token_is_preferred_to_the_api_key():
    assert common.auth_headers("key", "tok") == {"Authorization": "Bearer tok"}
    assert common.auth_headers("key") == {"x-api-key": "key"}
    assert common.auth_headers(None) == {}


def test_publish_call_carries_wait_and_bytes():
    call = common.publish_call("key", "c", "héllo", None, 2.5)
    assert (call.method, call.path, call.content, call.params) == (
        "POST",
        "/webchannel/v1/channels/c",
        "héllo".encode(),
        {"wait": "2.5"},
    )
    assert call.extra_timeout == 2.5
    assert common.publish_call("key", "c", b"", None, 3).params == {"wait": "3"}
    assert common.publish_call("key", "c", b"", None, None).params == {}
    with pytest.raises(ValueError, match="wait"):
        common.publish_call("key", "c", b"", None, -1)


def test_subscribers_header():
    assert common.subscribers(response(204, b"", "", **{"Webchannel-Subscribers": "3"})) == 3
    assert common.subscribers(response(204)) is None
    assert common.subscribers(response(204, b"", "", **{"Webchannel-Subscribers": "many"})) is None


def test_channel_from_the_create_response():
    channel = Channel.from_json(
        {"channelId": "c", "token": "t", "subscribeToken": "s", "expiresAt": "2026-11-27T21:00:00Z"}
    )
    assert channel == Channel("c", "t", "s", datetime(2026, 11, 27, 21, tzinfo=UTC))
    assert Channel.from_json({"channelId": "c", "token": "t"}) == Channel("c", "t", None, None)
    with pytest.raises(WebchannelError, match="channelId or token"):
        Channel.from_json({"channelId": "c"})


@pytest.mark.parametrize("kwargs", [{"retries": -1}, {"timeout": 0}])
def test_nonsense_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match="retries must be >= 0 and timeout > 0"):
        Client("http://127.0.0.1:1", **kwargs)
    with pytest.raises(ValueError, match="retries must be >= 0 and timeout > 0"):
        AsyncClient("http://127.0.0.1:1", **kwargs)
