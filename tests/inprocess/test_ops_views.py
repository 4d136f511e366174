"""Operations endpoints (/healthz, /readyz, /metrics with Basic auth) and CORS."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from channels_api.config import MetricsConfig
from tests.common import assert_problem, make_token
from tests.harness import REQUIRED_METRIC_NAMES, timeout

from .helpers import API_KEY_HEADERS, CREATE_PATH, channel_path, redis_layers, subscriber

HTTP_BY_VIEW_AND_STATUS = "django_http_responses_total_by_status_view_method_total"


async def test_healthz_is_200_ok(async_client):
    response = await async_client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"OK"


async def test_readyz_is_200_with_the_in_memory_layer(async_client):
    response = await async_client.get("/readyz")
    assert response.status_code == 200


async def test_readyz_is_200_with_a_reachable_redis(async_client, redis_server):
    with override_settings(CHANNEL_LAYERS=redis_layers(redis_server.url)):
        try:
            response = await async_client.get("/readyz")
        finally:
            await get_channel_layer().flush()
    assert response.status_code == 200


async def test_readyz_is_503_problem_when_redis_is_unreachable(async_client, unreachable_redis_layer):
    async with asyncio.timeout(timeout(5)):
        response = await async_client.get("/readyz")
    assert_problem(response, 503)


def metric_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def test_metrics_expose_every_required_metric_and_http_responses_by_view_and_status(async_client):
    assert (
        await async_client.post(channel_path("ops-any"), data=b"x", content_type="text/plain", headers=API_KEY_HEADERS)
    ).status_code == 204
    response = await async_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0].split(" ")[0] for line in metric_lines(response.content.decode())}
    for name in REQUIRED_METRIC_NAMES:
        assert name in names, name
    assert HTTP_BY_VIEW_AND_STATUS in names
    assert any(
        line.startswith(HTTP_BY_VIEW_AND_STATUS) and 'status="204"' in line and 'view="publish"' in line
        for line in metric_lines(response.content.decode())
    )


async def test_metrics_carry_no_channel_id_as_a_label_value(async_client):
    channel_id = f"leak-{uuid.uuid4().hex}"
    async with subscriber(channel_id):
        for headers in (API_KEY_HEADERS, {"authorization": f"Bearer {make_token(channel_id)}"}, {}):
            await async_client.post(channel_path(channel_id), data=b"x", content_type="text/plain", headers=headers)
        await async_client.get(channel_path(channel_id))
        text = (await async_client.get("/metrics")).content.decode()
    assert channel_id not in text
    assert uuid.UUID(channel_id[5:]).hex not in text


@pytest.fixture
def metrics_auth(settings):
    config = settings.WEBCHANNEL
    metrics = MetricsConfig(auth_enabled=True, auth_username="prom", auth_password="s3cr3t:pw")
    with override_settings(WEBCHANNEL=dataclasses.replace(config, metrics=metrics)):
        yield


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("prom", "wrong"),
        basic("wrong", "s3cr3t:pw"),
        basic("prom", ""),
        basic("", ""),
        {"authorization": "Basic"},
        {"authorization": "Basic !!!not-base64!!!"},
        {"authorization": "Basic cHJvbQ"},  # truncated base64
        {"authorization": "Basic " + base64.b64encode(b"prom").decode()},  # no colon
        {"authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},  # not UTF-8
        {"authorization": "Bearer " + base64.b64encode(b"prom:s3cr3t:pw").decode()},
    ],
    ids=[
        "none",
        "wrong-password",
        "wrong-user",
        "empty-password",
        "empty-both",
        "scheme-only",
        "malformed-base64",
        "truncated-base64",
        "no-colon",
        "non-utf8",
        "bearer-scheme",
    ],
)
async def test_metrics_with_auth_enabled_refuse_missing_or_wrong_credentials_with_401_basic(
    async_client, metrics_auth, headers
):
    response = await async_client.get("/metrics", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("basic")
    assert b"webchannel_messages_published_total" not in response.content


async def test_metrics_with_auth_enabled_accept_the_right_credentials(async_client, metrics_auth):
    response = await async_client.get("/metrics", headers=basic("prom", "s3cr3t:pw"))
    assert response.status_code == 200
    assert b"webchannel_messages_published_total" in response.content


async def test_metrics_without_auth_enabled_need_no_credentials(async_client):
    response = await async_client.get("/metrics")
    assert response.status_code == 200


# --- CORS --------------------------------------------------------------------------

PREFLIGHT = {
    "origin": "https://app.example.com",
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, x-api-key",
}


def allowed_header_names(response) -> set[str]:
    return {h.strip().lower() for h in response.headers.get("access-control-allow-headers", "").split(",")}


@pytest.mark.parametrize("path", [CREATE_PATH, channel_path("cors-chan")])
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_preflight_from_an_allowed_origin_gets_allow_headers(async_client, path, method):
    with override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"], CORS_ALLOW_ALL_ORIGINS=False):
        response = await async_client.options(path, headers={**PREFLIGHT, "access-control-request-method": method})
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert method in response.headers["access-control-allow-methods"]
    assert {"authorization", "content-type", "x-api-key"} <= allowed_header_names(response)


async def test_preflight_from_another_origin_gets_no_allow_origin(async_client):
    with override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"], CORS_ALLOW_ALL_ORIGINS=False):
        response = await async_client.options(CREATE_PATH, headers={**PREFLIGHT, "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_with_allow_all_origins_allows_any_origin(async_client):
    with override_settings(CORS_ALLOWED_ORIGINS=[], CORS_ALLOW_ALL_ORIGINS=True):
        response = await async_client.options(
            CREATE_PATH, headers={**PREFLIGHT, "origin": "https://anything.example.org"}
        )
    assert response.headers["access-control-allow-origin"] in ("*", "https://anything.example.org")
    assert {"authorization", "content-type", "x-api-key"} <= allowed_header_names(response)


async def test_actual_request_from_an_allowed_origin_carries_allow_origin(async_client):
    with override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"], CORS_ALLOW_ALL_ORIGINS=False):
        response = await async_client.post(
            CREATE_PATH,
            data=b"",
            content_type="application/json",
            headers={**API_KEY_HEADERS, "origin": "https://app.example.com"},
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"


async def test_error_response_to_an_allowed_origin_carries_allow_origin(async_client):
    with override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"], CORS_ALLOW_ALL_ORIGINS=False):
        response = await async_client.post(
            CREATE_PATH, data=b"", content_type="application/json", headers={"origin": "https://app.example.com"}
        )
    assert_problem(response, 401)
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
