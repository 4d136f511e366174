"""Operations endpoints (health, readiness, metrics) and CORS over real HTTP.

/healthz, /readyz, /metrics (names, HTTP responses by view and status, no channel ids,
optional Basic auth) and CORS preflight/actual responses.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.common import assert_problem
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    create_channel,
    http_client,
    metric_value,
    metrics_text,
    publish,
    recv_binary,
    subscribe,
)
from tests.harness import API_KEY, REQUIRED_METRIC_NAMES, ServerProcess, base_config, serving, timeout

METRICS_USER = "prometheus"
METRICS_PASSWORD = "s3cret-pässword"  # non-ASCII on purpose: Basic credentials are UTF-8
APP_ORIGIN = "https://app.example"
FOREIGN_ORIGIN = "https://evil.example"
REQUESTED_HEADERS = "authorization, content-type, x-api-key"

HTTP_RESPONSES = "django_http_responses_total_by_status_view_method_total"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Metrics behind Basic auth, and CORS for one origin."""
    config = base_config(
        metrics={"auth_enabled": True, "auth_username": METRICS_USER, "auth_password": METRICS_PASSWORD},
        server={"cors_origins": [APP_ORIGIN]},
    )
    with serving(tmp_path_factory.mktemp("metrics-auth-cors"), config) as server:
        yield server


@pytest.fixture(scope="module")
def any_origin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"cors_allow_any_origin": True})
    with serving(tmp_path_factory.mktemp("cors-any"), config) as server:
        yield server


def get(server: ServerProcess, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=timeout(10), **kwargs)  # type: ignore[arg-type]


# --- health and readiness --------------------------------------------------------------------


def test_healthz_answers_200_ok(shared_server: ServerProcess) -> None:
    response = get(shared_server, "/healthz")
    assert response.status_code == 200
    assert response.text.strip() == "OK"


def test_readyz_answers_200_with_the_in_process_layer(shared_server: ServerProcess) -> None:
    response = get(shared_server, "/readyz")
    assert response.status_code == 200, response.text


# --- metrics ---------------------------------------------------------------------------------


async def test_metrics_expose_every_required_metric_and_responses_by_view_and_status(
    shared_server: ServerProcess,
) -> None:
    channel_id, token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        response = await publish(client, shared_server.url, channel_id, b"counted", token=token)
        assert response.status_code == 204
        assert await recv_binary(ws) == b"counted"
        unauthorised = await client.post(channel_url(shared_server.url, channel_id), content=b"x")
        assert unauthorised.status_code == 401
        text = (await client.get(f"{shared_server.url}/metrics")).text
    assert_prometheus_text(text)
    for name in REQUIRED_METRIC_NAMES:
        assert metric_value(text, name) is not None, f"{name} missing from /metrics"
    assert sample(text, "webchannel_messages_published_total") >= 1
    assert sample(text, "webchannel_messages_published_bytes_total") >= len(b"counted")
    assert sample(text, "webchannel_messages_sent_total") >= 1
    assert sample(text, "webchannel_messages_sent_bytes_total") >= len(b"counted")
    for view, status in [("publish", "204"), ("publish", "401"), ("create_channel", "200")]:
        assert sample(text, HTTP_RESPONSES, {"view": view, "status": status}) >= 1


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    value = metric_value(text, name, labels)
    assert value is not None, f"no sample {name}{labels or ''} in /metrics"
    return value


def assert_prometheus_text(text: str) -> None:
    assert "# TYPE webchannel_users_connected gauge" in text
    assert "# TYPE webchannel_messages_published_total counter" in text


async def test_metrics_never_carry_a_channel_id(shared_server: ServerProcess) -> None:
    ids = ["leakcheck-7f3a9c", "leakcheck-tést-ü", "leakcheck-🚀"]
    async with http_client() as client:
        for wanted in ids:
            channel_id, token = create_channel(shared_server.url, wanted)
            assert (await publish(client, shared_server.url, channel_id, b"x", token=token)).status_code == 204
            refused = await client.post(channel_url(shared_server.url, channel_id), content=b"x")
            assert refused.status_code == 401
        response = await client.get(f"{shared_server.url}/metrics")
    assert response.status_code == 200
    assert "leakcheck" not in response.text
    assert "7f3a9c" not in response.text


def test_metrics_content_type_is_prometheus_text(shared_server: ServerProcess) -> None:
    response = get(shared_server, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(None, id="no-credentials"),
        pytest.param((METRICS_USER, "wrong"), id="wrong-password"),
        pytest.param(("someone", METRICS_PASSWORD), id="wrong-user"),
        pytest.param((METRICS_USER, ""), id="empty-password"),
        pytest.param((METRICS_USER, METRICS_PASSWORD[:-1]), id="password-prefix"),
    ],
)
def test_metrics_with_auth_enabled_refuse_missing_or_wrong_credentials(
    auth_server: ServerProcess, auth: tuple[str, str] | None
) -> None:
    response = get(auth_server, "/metrics", auth=auth)
    assert_problem(response, 401)
    assert response.headers.get("www-authenticate", "").lower().startswith("basic")
    assert "webchannel_users_connected" not in response.text


def test_metrics_with_auth_enabled_refuse_a_bearer_or_api_key(auth_server: ServerProcess) -> None:
    for headers in ({"authorization": f"Bearer {API_KEY}"}, {"x-api-key": API_KEY}):
        assert_problem(get(auth_server, "/metrics", headers=headers), 401)


def test_metrics_with_auth_enabled_answer_the_right_credentials(auth_server: ServerProcess) -> None:
    text = metrics_text(auth_server.url, auth=(METRICS_USER, METRICS_PASSWORD))
    assert metric_value(text, "webchannel_users_connected") is not None
    # The same credentials, as a client would encode them by hand.
    encoded = base64.b64encode(f"{METRICS_USER}:{METRICS_PASSWORD}".encode()).decode()
    response = get(auth_server, "/metrics", headers={"authorization": f"Basic {encoded}"})
    assert response.status_code == 200, response.text


def test_health_endpoints_stay_open_when_metrics_auth_is_enabled(auth_server: ServerProcess) -> None:
    assert get(auth_server, "/healthz").status_code == 200
    assert get(auth_server, "/readyz").status_code == 200


# --- CORS ------------------------------------------------------------------------------------


def preflight(server: ServerProcess, path: str, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(
        f"{server.url}{path}",
        headers={
            "origin": origin,
            "access-control-request-method": method,
            "access-control-request-headers": REQUESTED_HEADERS,
        },
        timeout=timeout(10),
    )


def allowed_headers(response: httpx.Response) -> set[str]:
    value = response.headers.get("access-control-allow-headers", "")
    return {h.strip().lower() for h in value.split(",") if h.strip()}


@pytest.mark.parametrize("path", [CHANNELS, f"{CHANNELS}/some-channel", f"{CHANNELS}/t%C3%A9st"])
@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_cors_preflight_from_a_configured_origin_is_allowed(auth_server: ServerProcess, path: str, method: str) -> None:
    response = preflight(auth_server, path, APP_ORIGIN, method)
    assert response.status_code in (200, 204), response.text
    assert response.headers.get("access-control-allow-origin") == APP_ORIGIN
    assert {"authorization", "content-type", "x-api-key"} <= allowed_headers(response)
    methods = {m.strip().upper() for m in response.headers.get("access-control-allow-methods", "").split(",")}
    assert method in methods


@pytest.mark.parametrize("origin", [FOREIGN_ORIGIN, "https://app.example.evil.example", "http://app.example", "null"])
def test_cors_preflight_from_another_origin_gets_no_allow_origin(auth_server: ServerProcess, origin: str) -> None:
    response = preflight(auth_server, CHANNELS, origin)
    assert "access-control-allow-origin" not in response.headers


def test_cors_is_off_by_default(shared_server: ServerProcess) -> None:
    response = preflight(shared_server, CHANNELS, APP_ORIGIN)
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("origin", [FOREIGN_ORIGIN, APP_ORIGIN, "http://localhost:3000"])
def test_cors_allow_any_origin_allows_every_origin(any_origin_server: ServerProcess, origin: str) -> None:
    response = preflight(any_origin_server, f"{CHANNELS}/abc", origin)
    assert response.status_code in (200, 204), response.text
    assert response.headers.get("access-control-allow-origin") in (origin, "*")
    assert {"authorization", "content-type", "x-api-key"} <= allowed_headers(response)


async def test_a_real_cross_origin_create_and_publish_carry_allow_origin(auth_server: ServerProcess) -> None:
    async with http_client() as client:
        created = await client.post(
            f"{auth_server.url}{CHANNELS}",
            headers={"origin": APP_ORIGIN, "x-api-key": API_KEY, "content-type": "application/json"},
            content=b"{}",
        )
        assert created.status_code == 200, created.text
        assert created.headers.get("access-control-allow-origin") == APP_ORIGIN
        channel_id, token = created.json()["channelId"], created.json()["token"]
        published = await client.post(
            channel_url(auth_server.url, channel_id),
            headers={"origin": APP_ORIGIN, "authorization": f"Bearer {token}", "content-type": "text/plain"},
            content=b"from the browser",
        )
        assert published.status_code == 204, published.text
        assert published.headers.get("access-control-allow-origin") == APP_ORIGIN
        # A browser may read the subscriber count of its publish.
        assert "webchannel-subscribers" in published.headers.get("access-control-expose-headers", "").lower()
        # An error answer carries it too, so the browser can read the problem document.
        refused = await client.post(
            channel_url(auth_server.url, channel_id), headers={"origin": APP_ORIGIN}, content=b"no token"
        )
        assert_problem(refused, 401)
        assert refused.headers.get("access-control-allow-origin") == APP_ORIGIN
        foreign = await client.post(
            f"{auth_server.url}{CHANNELS}", headers={"origin": FOREIGN_ORIGIN, "x-api-key": API_KEY}
        )
        assert foreign.status_code == 200
        assert "access-control-allow-origin" not in foreign.headers


async def test_a_real_cross_origin_request_under_allow_any_origin_carries_allow_origin(
    any_origin_server: ServerProcess,
) -> None:
    async with http_client() as client:
        created = await client.post(
            f"{any_origin_server.url}{CHANNELS}", headers={"origin": FOREIGN_ORIGIN, "x-api-key": API_KEY}
        )
    assert created.status_code == 200, created.text
    assert created.headers.get("access-control-allow-origin") in (FOREIGN_ORIGIN, "*")
