"""In-process publish from Django code: ``channels_api.publish``, ``publish_sync`` and
``create_channel`` follow the HTTP API's rules (id, size limit, 2 s bound, layer failures)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

import channels_api
from channels_api import InvalidChannelId, LayerUnavailable, MessageTooLarge, create_channel, publish
from channels_api.auth import authorize, verify_token
from channels_api.config import load_config
from channels_api.exceptions import ScopeDenied
from tests.common import SECRET_KEY
from tests.harness import REPO, clean_env, timeout

from .helpers import API_KEY_HEADERS, CREATE_PATH, asgi_request, receive_frame, sample, subscriber

APP_URLS = "tests.inprocess.publish_urls"


@pytest.mark.urls(APP_URLS)
async def test_a_django_view_publishes_in_process_to_a_websocket_subscriber(async_client):
    async with subscriber("inproc-view") as sub:
        published = sample("webchannel_messages_published_total")
        response = await async_client.post("/app/publish/inproc-view", data=b"\x00from a view\xff", content_type="x")
        assert response.status_code == 200, response.content
        assert response.json() == {"published": True, "result": 1}  # subscribers, as Webchannel-Subscribers
        assert await receive_frame(sub) == b"\x00from a view\xff"
        assert sample("webchannel_messages_published_total") == published + 1


async def test_publish_relays_the_bytes_unchanged_and_counts_them():
    payload = bytes(range(256)) * 4
    async with subscriber("inproc-bytes") as sub:
        before = sample("webchannel_messages_published_bytes_total")
        assert await publish("inproc-bytes", payload) == 1
        assert await receive_frame(sub) == payload
        assert sample("webchannel_messages_published_bytes_total") == before + len(payload)


async def test_publish_accepts_bytearray_and_refuses_text():
    async with subscriber("inproc-types") as sub:
        await publish("inproc-types", bytearray(b"ba"))  # type: ignore[arg-type]  # annotated bytes; accepted
        assert await receive_frame(sub) == b"ba"
    with pytest.raises(TypeError, match="bytes"):
        await publish("inproc-types", "text")  # type: ignore[arg-type]


async def test_publish_without_subscribers_returns_zero():
    assert await publish("inproc-nobody", b"x") == 0


@pytest.mark.parametrize("channel_id", ["", "has space", "x" * 129, "a/b", "nul\x00"])
async def test_publish_to_an_invalid_channel_id_raises_invalid_channel_id(channel_id):
    with pytest.raises(InvalidChannelId):
        await publish(channel_id, b"x")


async def test_a_message_over_max_message_size_raises_message_too_large_and_is_not_sent(settings):
    limit = settings.WEBCHANNEL.channel.max_message_size
    async with subscriber("inproc-large") as sub:
        with pytest.raises(MessageTooLarge, match=f"{limit + 1} bytes; channel.max_message_size is {limit}"):
            await publish("inproc-large", b"x" * (limit + 1))
        await publish("inproc-large", b"x" * limit)  # exactly the limit is accepted
        assert len(await receive_frame(sub)) == limit


async def test_too_large_is_a_value_error_too():
    assert issubclass(MessageTooLarge, ValueError)
    assert issubclass(MessageTooLarge, channels_api.exceptions.WebchannelError)


@pytest.mark.urls(APP_URLS)
async def test_the_view_reports_the_errors_publish_raises(async_client):
    response = await async_client.post("/app/publish/" + "x" * 129, data=b"x", content_type="x")
    assert response.json()["error"] == "InvalidChannelId"


@pytest.mark.slow
async def test_publish_raises_layer_unavailable_at_once_when_redis_is_down(unreachable_redis_layer):
    started = time.monotonic()
    with pytest.raises(LayerUnavailable, match="unavailable"):
        await publish("inproc-down", b"lost")
    assert time.monotonic() - started < timeout(2.5)


@pytest.mark.slow
async def test_publish_raises_layer_unavailable_within_two_seconds_when_redis_never_answers(silent_redis_layer):
    started = time.monotonic()
    async with asyncio.timeout(timeout(5)):
        with pytest.raises(LayerUnavailable):
            await publish("inproc-wedged", b"lost")
    assert time.monotonic() - started < timeout(3)


async def test_create_channel_returns_what_the_http_create_returns():
    created = create_channel("inproc-create")
    response = await asgi_request("POST", CREATE_PATH, b'{"channelId": "inproc-create"}', API_KEY_HEADERS)
    assert response.status == 200
    assert set(created) == set(json.loads(response.body))
    assert created["channelId"] == "inproc-create"
    assert verify_token(created["token"], "inproc-create", [SECRET_KEY])
    assert authorize(created["subscribeToken"], "inproc-create", "subscribe", [SECRET_KEY])
    with pytest.raises(ScopeDenied):
        authorize(created["subscribeToken"], "inproc-create", "publish", [SECRET_KEY])
    assert created["expiresAt"].endswith("Z")


async def test_create_channel_without_an_id_generates_one_whose_token_subscribes():
    created = create_channel()
    assert len(created["channelId"]) >= 21
    async with subscriber(created["channelId"], created["token"]) as sub:
        await publish(created["channelId"], b"hello")
        assert await receive_frame(sub) == b"hello"


def test_create_channel_refuses_an_invalid_id_and_counts_each_channel():
    with pytest.raises(InvalidChannelId):
        create_channel("bad id")
    before = sample("webchannel_channels_created_total")
    create_channel()
    assert sample("webchannel_channels_created_total") == before + 1


@pytest.mark.urls(APP_URLS)
async def test_a_synchronous_view_creates_a_channel(async_client):
    response = await async_client.get("/app/create", {"id": "from-sync-view"})
    assert response.status_code == 200
    assert response.json()["channelId"] == "from-sync-view"


def test_the_package_imports_without_django_settings():
    code = (
        "import channels_api, django.conf; "
        "assert not django.conf.settings.configured; "
        "assert callable(channels_api.__getattr__); "
        "print(sorted(channels_api.__all__))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=timeout(30)
    )
    assert result.returncode == 0, result.stderr
    assert "publish_sync" in result.stdout


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        channels_api.no_such_thing  # noqa: B018


def test_webchannel_settings_is_the_mapping_the_project_settings_use(settings):
    mapped = channels_api.webchannel_settings(settings.WEBCHANNEL)
    assert mapped == {"WEBCHANNEL": settings.WEBCHANNEL, "CHANNEL_LAYERS": settings.CHANNEL_LAYERS}


def test_webchannel_settings_maps_redis_url_to_the_redis_pub_sub_layer(settings):
    environ = {
        "WC_REDIS__URL": "redis://127.0.0.1:1/0",
        "WC_REDIS__PREFIX": "host.",
        "WC_CHANNEL__SECRET_KEY": SECRET_KEY,
    }
    config = load_config(None, environ)
    layer = channels_api.webchannel_settings(config)["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "channels_api.server.redis_layer.RedisPubSubChannelLayer"
    assert layer["CONFIG"]["prefix"] == "host."
    assert layer["CONFIG"]["max_backlog_bytes"] == config.server.max_backlog_bytes
