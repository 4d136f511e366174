"""Edges a new user hits, against a real ``manage.py serve``: ids with malformed percent-encoding
sent byte for byte (Daphne decodes ``%FF`` to U+FFFD and keeps ``%ZZ``), a wrong API key, and
refused subscribes counted under their reason labels on ``/metrics``."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.common import PROBLEM_JSON, assert_problem, expired_token, make_token
from tests.e2e.helpers import (
    CHANNELS,
    metric_value,
    metrics_text,
    websocket_handshake,
)
from tests.harness import API_KEY, ServerProcess, timeout

REFUSED = "webchannel_websocket_refused_total"


def raw_post(base_url: str, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """POST ``target`` exactly as given (no client-side re-encoding), HTTP/1.0 so the body is not chunked."""
    address = urlsplit(base_url)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST {target} HTTP/1.0\r\nHost: {address.netloc}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{head}\r\n"
    ).encode("ascii") + body
    answer = b""
    with socket.create_connection((address.hostname, address.port), timeout=timeout(10)) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    head_bytes, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, content


def refused(base_url: str, reason: str) -> float:
    return metric_value(metrics_text(base_url), REFUSED, {"reason": reason}) or 0.0


@pytest.mark.parametrize("raw", ["%FF", "a%FFb", "%ZZ", "a%2"])
def test_publish_to_an_id_with_malformed_percent_encoding_is_400_problem(shared_server: ServerProcess, raw: str):
    status, headers, body = raw_post(shared_server.url, f"{CHANNELS}/{raw}", b"x", {"x-api-key": API_KEY})
    assert status == 400, body
    assert headers["content-type"].startswith(PROBLEM_JSON)
    document = json.loads(body)
    assert document["status"] == 400
    assert "percent-encoded UTF-8" in document["detail"] or "two hex digits" in document["detail"], document


@pytest.mark.parametrize(("raw", "routed"), [("%FF", "\ufffd"), ("%ZZ", "%ZZ")])
def test_subscribe_to_an_id_with_malformed_percent_encoding_is_refused(
    shared_server: ServerProcess, raw: str, routed: str
):
    before = refused(shared_server.url, "invalid_channel_id")
    target = f"{CHANNELS}/{raw}?access_token={make_token(routed)}"
    assert websocket_handshake(shared_server.url, target) == 403
    assert refused(shared_server.url, "invalid_channel_id") == before + 1


def test_a_properly_encoded_replacement_character_is_published(shared_server: ServerProcess):
    status, _, body = raw_post(shared_server.url, f"{CHANNELS}/%EF%BF%BD", b"x", {"x-api-key": API_KEY})
    assert status == 204, body


def test_an_expired_token_is_counted_as_expired_not_invalid(shared_server: ServerProcess):
    before = {reason: refused(shared_server.url, reason) for reason in ("expired_token", "invalid_token")}
    target = f"{CHANNELS}/edge-expired?access_token={expired_token('edge-expired')}"
    assert websocket_handshake(shared_server.url, target) == 403
    assert refused(shared_server.url, "expired_token") == before["expired_token"] + 1
    assert refused(shared_server.url, "invalid_token") == before["invalid_token"]
    assert "InvalidToken" not in metrics_text(shared_server.url)


def test_a_wrong_api_key_is_not_accepted_and_a_missing_one_is_asked_for(shared_server: ServerProcess):
    url = f"{shared_server.url}{CHANNELS}"
    wrong = httpx.post(url, headers={"x-api-key": "not-the-key"}, timeout=timeout(10))
    assert assert_problem(wrong, 401)["detail"] == "the x-api-key was not accepted"
    missing = httpx.post(url, timeout=timeout(10))
    assert assert_problem(missing, 401)["detail"] == "an x-api-key header is required"
    publish_wrong = httpx.post(f"{url}/edge-key", headers={"x-api-key": "not-the-key"}, timeout=timeout(10))
    assert assert_problem(publish_wrong, 401)["detail"] == "the x-api-key was not accepted"
