"""The server's answers conform to its OpenAPI document (``/webchannel/v1/openapi.json``).

Schemathesis (its command line, as a developer would run it) fuzzes every operation of a real
``manage.py serve`` with every check it has: no 5xx, status codes, content types, headers and
bodies (problem+json errors included) as documented, invalid input refused, unsupported
methods 405 with ``Allow``, missing credentials refused. The event stream never ends by
itself, so it is not fuzzed (and WebSockets are not in OpenAPI); its answers, and the ones
fuzzing cannot reach (413, scopes, metrics authentication, 431), are checked one by one with
schemathesis's own conformance checks.

Two checks do not apply to this API and are left out on purpose: ``use_after_free`` (a closed
channel is not a deleted resource: nothing is stored, its info still answers 200) and, for the
token run only, generated API keys (a valid token next to a wrong key is still a valid token).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi import checks

from channels_api.openapi import DOCUMENT
from tests.common import API_KEY
from tests.e2e.helpers import CHANNELS, channel_url
from tests.harness import base_config, clean_env, serving, timeout

pytestmark = pytest.mark.slow

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
OPENAPI_PATH = "/webchannel/v1/openapi.json"
MAX_EXAMPLES = 30
SEED = 20261129  # reproducible runs; change it locally to explore more inputs
CHANNEL = "openapi-é"
CONFORMANCE = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
# Unknown query parameters are ignored by design (as by most HTTP APIs), not refused.
BASE_SETTINGS = "[generation]\nallow-extra-parameters = false\n"
JSON_ONLY = {"Accept": "application/json"}


def run_schemathesis(tmp_path: Path, base_url: str, settings: str, *args: str) -> None:
    """``schemathesis run`` with every check against the served document; fail with its report."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(BASE_SETTINGS + settings)
    command = [
        SCHEMATHESIS,
        "--no-color",
        "--config-file",
        str(config),
        "run",
        base_url + OPENAPI_PATH,
        "--url",
        base_url,
        "--checks",
        "all",
        "--exclude-checks",
        "use_after_free",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--suppress-health-check",
        "all",
        "--workers",
        "1",
        "--request-timeout",
        str(timeout(10)),
        *args,
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,  # its cache and reports stay out of the checkout
        env=clean_env(SCHEMATHESIS_HOOKS=str(HOOKS)),
        capture_output=True,
        text=True,
        timeout=timeout(240),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


def create(base_url: str, channel_id: str = CHANNEL) -> dict[str, Any]:
    response = httpx.post(base_url + CHANNELS, headers={"x-api-key": API_KEY}, json={"channelId": channel_id})
    assert response.status_code == HTTPStatus.OK, response.text
    return response.json()


@pytest.mark.timeout(300)
def test_fuzzing_with_an_api_key_finds_no_nonconforming_answer(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        key = ["-H", f"x-api-key: {API_KEY}"]
        run_schemathesis(tmp_path, server.url, "", *key, "--exclude-operation-id", "channelEvents")


@pytest.mark.timeout(300)
def test_fuzzing_with_a_channel_token_finds_no_nonconforming_answer(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        token = create(server.url)["token"]
        settings = f'with-security-parameters = false\n\n[parameters]\n"path.channelId" = {json.dumps(CHANNEL)}\n'
        operations = ["--include-operation-id", "channelInfo", "--include-operation-id", "publish"]
        operations += ["--include-operation-id", "closeChannel"]
        # Stateful runs need create, which a token cannot do.
        phases = ["--phases", "examples,coverage,fuzzing"]
        run_schemathesis(tmp_path, server.url, settings, "-H", f"Authorization: Bearer {token}", *operations, *phases)


@pytest.fixture(scope="module")
def document() -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text(encoding="utf-8")))


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[str]:
    """A server with metrics authentication, a small message limit and a key that may only read channel info."""
    config = base_config(
        channel={"max_message_size": 64},
        metrics={"auth_enabled": True, "auth_username": "prom", "auth_password": "scrape-secret"},
    )
    keys = json.dumps([{"name": "reader", "key": "reader-key-0123456789", "scopes": ["info"]}])
    with serving(tmp_path, config, env={"WC_CHANNEL__KEYS": keys}) as server:
        yield server.url


def conforms(document: Any, path: str, method: str, response: httpx.Response) -> None:
    case = document[path][method].Case(path_parameters={"channelId": CHANNEL} if "{channelId}" in path else None)
    case.validate_response(response, checks=CONFORMANCE)


def test_answers_fuzzing_does_not_reach_conform(document: Any, strict_server: str) -> None:
    base = strict_server
    created = create(base)
    token, subscribe_token = created["token"], created["subscribeToken"]
    other = create(base, "another")["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    reader = {"x-api-key": "reader-key-0123456789"}
    create_path, channel_path = CHANNELS, CHANNELS + "/{channelId}"
    events_path, channel = channel_path + "/events", channel_url("", CHANNEL)
    # (method, documented path, URL path, expected status, request arguments)
    cases: list[tuple[str, str, str, int, dict[str, Any]]] = [
        ("POST", create_path, CHANNELS, 401, {}),
        ("POST", create_path, CHANNELS, 403, {"headers": reader}),
        ("POST", create_path, CHANNELS, 400, {"headers": {"x-api-key": API_KEY}, "content": b"[]"}),
        ("POST", create_path, CHANNELS, 413, {"headers": {"x-api-key": API_KEY}, "content": b" " * 17_000}),
        ("POST", channel_path, channel, 403, {"headers": {"Authorization": f"Bearer {subscribe_token}"}}),
        ("POST", channel_path, channel, 403, {"headers": {"Authorization": f"Bearer {other}"}}),
        ("POST", channel_path, channel, 403, {"headers": reader}),
        ("POST", channel_path, channel, 401, {"headers": {"Authorization": "Bearer not-a-token"}}),
        ("POST", channel_path, channel, 413, {"headers": bearer, "content": b"x" * 65}),
        ("POST", channel_path, channel, 400, {"headers": bearer, "params": {"wait": "31"}}),
        ("POST", channel_path, CHANNELS + "/%FF", 400, {"headers": bearer}),
        ("POST", channel_path, channel, 204, {"headers": bearer, "params": {"wait": "0.01"}}),
        ("GET", channel_path, channel, 403, {"headers": {"Authorization": f"Bearer {subscribe_token}"}}),
        ("GET", channel_path, channel, 200, {"headers": reader}),
        ("DELETE", channel_path, channel, 403, {"headers": reader}),
        ("DELETE", channel_path, channel, 413, {"headers": bearer, "content": b"x" * 65}),
        ("DELETE", channel_path, channel, 204, {"headers": bearer, "content": b"bye"}),
        ("GET", events_path, channel + "/events", 401, {}),
        ("GET", events_path, channel + "/events", 403, {"params": {"access_token": other}}),
        ("GET", events_path, channel + "/events", 406, {"params": {"access_token": token}, "headers": JSON_ONLY}),
        ("GET", "/metrics", "/metrics", 401, {}),
        ("GET", "/metrics", "/metrics", 200, {"auth": ("prom", "scrape-secret")}),
        ("GET", "/healthz", "/healthz", 431, {"headers": {"X-Padding": "x" * 20_000}}),
        ("GET", "/readyz", "/readyz", 200, {}),
        ("GET", OPENAPI_PATH, OPENAPI_PATH, 200, {}),
    ]
    with httpx.Client(base_url=base, timeout=timeout(10)) as client:
        for method, path, url, status, kwargs in cases:
            response = client.request(method, url, **kwargs)
            assert response.status_code == status, (method, url, response.text)
            conforms(document, path, method, response)
        script = client.get("/webchannel/v1/client.js")
        conforms(document, "/webchannel/v1/client.js", "GET", script)
        again = client.get("/webchannel/v1/client.js", headers={"If-None-Match": script.headers["ETag"]})
        assert again.status_code == HTTPStatus.NOT_MODIFIED
        conforms(document, "/webchannel/v1/client.js", "GET", again)


def test_an_open_event_stream_is_answered_as_documented(strict_server: str) -> None:
    token = create(strict_server)["token"]
    url = channel_url(strict_server, CHANNEL) + "/events"
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}
    with httpx.stream("GET", url, headers=headers, timeout=timeout(10)) as response:
        assert response.status_code == HTTPStatus.OK
        paths = json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"]
        documented = paths["/webchannel/v1/channels/{channelId}/events"]["get"]["responses"]["200"]
        assert response.headers["Content-Type"].split(";")[0] in documented["content"]
        assert response.headers["Cache-Control"] == documented["headers"]["Cache-Control"]["schema"]["const"]
