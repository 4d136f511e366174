"""Named API keys with scopes (``[[channel.keys]]``) against a real ``manage.py serve``: 403 for a
valid key without the scope, the key's name (never the key) in the access log and as a metric label."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.common import SECRET_KEY, assert_problem
from tests.e2e.helpers import CHANNELS, channel_url, metric_value, metrics_text, non_empty_lines
from tests.harness import API_KEY, ServerProcess, run_serve, serving, timeout, wait_for

CI_KEY = "ci-key-5up3r-s3cr3t"
CREATOR_KEY = "creator-key-s3cr3t"
CONFIG = f"""
[server]
listen_address = "127.0.0.1:0"

[channel]
secret_key = "{SECRET_KEY}"
api_keys = ["{API_KEY}"]

[[channel.keys]]
name = "ci-worker"
key = "{CI_KEY}"
scopes = ["publish"]

[[channel.keys]]
name = "creator"
key = "{CREATOR_KEY}"
scopes = ["create", "info"]
"""


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("scoped-keys"), CONFIG) as server:
        yield server


def create(server: ServerProcess, key: str) -> httpx.Response:
    return httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": key}, json={}, timeout=timeout(10))


def publish(server: ServerProcess, channel_id: str, key: str) -> httpx.Response:
    return httpx.post(
        channel_url(server.url, channel_id), headers={"x-api-key": key}, content=b"m", timeout=timeout(10)
    )


def requests_total(server: ServerProcess, key: str, action: str) -> float:
    text = metrics_text(server.url)
    return metric_value(text, "webchannel_api_requests_total", {"key": key, "action": action}) or 0.0


def access_lines(server: ServerProcess, method: str, path: str) -> list[str]:
    return [line for line in non_empty_lines(server.output()) if f'"{method} {path}"' in line]


def test_each_key_does_what_its_scopes_allow(keyed_server):
    created = create(keyed_server, CREATOR_KEY)
    assert created.status_code == 200, created.text
    channel_id = created.json()["channelId"]

    document = assert_problem(create(keyed_server, CI_KEY), 403)
    assert document["detail"] == "this API key lacks the 'create' scope"

    assert publish(keyed_server, channel_id, CI_KEY).status_code == 204
    document = assert_problem(publish(keyed_server, channel_id, CREATOR_KEY), 403)
    assert document["detail"] == "this API key lacks the 'publish' scope"

    # The plain list keeps every scope.
    assert create(keyed_server, API_KEY).status_code == 200
    assert publish(keyed_server, channel_id, API_KEY).status_code == 204


def test_info_and_close_follow_the_scopes_too(keyed_server):
    channel_id = create(keyed_server, CREATOR_KEY).json()["channelId"]
    url = channel_url(keyed_server.url, channel_id)
    info = httpx.get(url, headers={"x-api-key": CREATOR_KEY}, timeout=timeout(10))
    assert info.status_code == 200, info.text
    document = assert_problem(httpx.get(url, headers={"x-api-key": CI_KEY}, timeout=timeout(10)), 403)
    assert document["detail"] == "this API key lacks the 'info' scope"
    document = assert_problem(httpx.delete(url, headers={"x-api-key": CREATOR_KEY}, timeout=timeout(10)), 403)
    assert document["detail"] == "this API key lacks the 'close' scope"
    assert httpx.delete(url, headers={"x-api-key": API_KEY}, timeout=timeout(10)).status_code == 204


def test_an_unknown_key_is_401_as_before(keyed_server):
    response = assert_problem(create(keyed_server, "no-such-key"), 401)
    assert response["detail"] == "the x-api-key was not accepted"
    assert_problem(publish(keyed_server, "some-channel", "no-such-key"), 401)


def test_a_key_lacking_the_scope_is_refused_even_with_a_valid_token(keyed_server):
    """A valid API key decides on its own: it cannot be topped up by another credential."""
    created = create(keyed_server, CREATOR_KEY).json()
    response = httpx.post(
        channel_url(keyed_server.url, created["channelId"]),
        headers={"x-api-key": CREATOR_KEY, "authorization": f"Bearer {created['token']}"},
        content=b"m",
        timeout=timeout(10),
    )
    assert_problem(response, 403)


def test_access_log_names_the_key_never_the_key_itself(keyed_server):
    channel_id = create(keyed_server, CREATOR_KEY).json()["channelId"]
    path = channel_url("", channel_id)
    assert publish(keyed_server, channel_id, CI_KEY).status_code == 204
    assert publish(keyed_server, channel_id, CREATOR_KEY).status_code == 403
    assert publish(keyed_server, channel_id, API_KEY).status_code == 204
    assert publish(keyed_server, channel_id, "no-such-key").status_code == 401

    def four_lines() -> list[str] | None:
        lines = access_lines(keyed_server, "POST", path)
        return lines if len(lines) == 4 else None

    lines = wait_for(four_lines, 10, "four access-log lines")
    expected = [("204", " key=ci-worker"), ("403", " key=creator"), ("204", " key=api_keys"), ("401", "")]
    for line, (status, suffix) in zip(lines, expected, strict=True):
        assert f'" {status} ' in line, line
        assert line.endswith(suffix) if suffix else "key=" not in line, line
    output = keyed_server.output()
    for secret in (CI_KEY, CREATOR_KEY, API_KEY, "no-such-key"):
        assert secret not in output


def test_a_token_request_after_a_key_request_on_one_connection_names_no_key(keyed_server):
    """The key's name belongs to its request: a keep-alive connection's next request does not inherit it.

    The token is one of the plain list's keys, which carries no key name of its own."""
    created = create(keyed_server, API_KEY).json()
    path = channel_url("", created["channelId"])
    with httpx.Client(timeout=timeout(10)) as client:
        url = f"{keyed_server.url}{path}"
        assert client.post(url, headers={"x-api-key": CI_KEY}, content=b"1").status_code == 204
        assert (
            client.post(url, headers={"authorization": f"Bearer {created['token']}"}, content=b"2").status_code == 204
        )

    def two_lines() -> list[str] | None:
        lines = access_lines(keyed_server, "POST", path)
        return lines if len(lines) == 2 else None

    lines = wait_for(two_lines, 10, "two access-log lines")
    assert lines[0].endswith(" key=ci-worker"), lines[0]
    assert "key=" not in lines[1], lines[1]


def test_requests_are_counted_by_key_name_and_action(keyed_server):
    before = {
        ("ci-worker", "publish"): requests_total(keyed_server, "ci-worker", "publish"),
        ("creator", "create"): requests_total(keyed_server, "creator", "create"),
        ("api_keys", "create"): requests_total(keyed_server, "api_keys", "create"),
    }
    channel_id = create(keyed_server, CREATOR_KEY).json()["channelId"]
    for _ in range(3):
        assert publish(keyed_server, channel_id, CI_KEY).status_code == 204
    assert create(keyed_server, API_KEY).status_code == 200
    assert create(keyed_server, CI_KEY).status_code == 403  # refused: not counted
    assert requests_total(keyed_server, "ci-worker", "publish") == before[("ci-worker", "publish")] + 3
    assert requests_total(keyed_server, "creator", "create") == before[("creator", "create")] + 1
    assert requests_total(keyed_server, "api_keys", "create") == before[("api_keys", "create")] + 1
    assert requests_total(keyed_server, "ci-worker", "create") == 0
    text = metrics_text(keyed_server.url)
    for secret in (CI_KEY, CREATOR_KEY, API_KEY):
        assert secret not in text


def test_keys_from_the_environment_as_json(tmp_path):
    keys = json.dumps([{"name": "env-ci", "key": "env-key-1", "scopes": ["create"]}])
    config = f'[server]\nlisten_address = "127.0.0.1:0"\n[channel]\nsecret_key = "{SECRET_KEY}"\n'
    with serving(tmp_path, config, env={"WC_CHANNEL__KEYS": keys}) as server:
        assert create(server, "env-key-1").status_code == 200
        assert "generated API key" not in server.output()


def test_a_bad_entry_stops_the_server_with_one_line(tmp_path):
    server = run_serve(tmp_path, CONFIG.replace('scopes = ["publish"]', 'scopes = ["publsh"]'))
    assert server.wait_exit(20) == 2
    lines = non_empty_lines(server.output())
    assert len(lines) == 1, lines
    assert "channel.keys[0].scopes: unknown scope 'publsh'" in lines[0]
    assert CI_KEY not in lines[0]
