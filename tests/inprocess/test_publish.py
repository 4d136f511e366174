"""POST /webchannel/v1/channels/{id}: credentials, id rules, bytes relayed unchanged, 503 on layer failure."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.common import alg_none_token, assert_problem, bearer, make_token
from tests.harness import API_KEY, timeout

from .helpers import API_KEY_HEADERS, asgi_request, channel_path, receive_frame, sample, subscriber


async def publish(
    async_client,
    channel_id: str,
    body: bytes = b"payload",
    headers=None,
    content_type: str = "application/octet-stream",
):
    headers = bearer(make_token(channel_id)) if headers is None else headers
    return await async_client.post(channel_path(channel_id), data=body, content_type=content_type, headers=headers)


async def test_publish_with_bearer_token_for_the_channel_is_204_and_reaches_the_subscriber(async_client):
    async with subscriber("pub-bearer") as sub:
        response = await publish(async_client, "pub-bearer", b"hello")
        assert response.status_code == 204
        assert response.content == b""
        assert await receive_frame(sub) == b"hello"


async def test_publish_with_api_key_is_204_and_reaches_the_subscriber(async_client):
    async with subscriber("pub-key") as sub:
        response = await publish(async_client, "pub-key", b"with key", headers=API_KEY_HEADERS)
        assert response.status_code == 204
        assert await receive_frame(sub) == b"with key"


async def test_publish_without_subscribers_is_204(async_client):
    response = await publish(async_client, "nobody-listens", b"into the void")
    assert response.status_code == 204


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer"},
        {"authorization": "Bearer not-a-jwt"},
        {"authorization": "Bearer a.b.c"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"x-api-key": "wrong-key"},
        {"x-api-key": API_KEY[:-1]},
    ],
    ids=["none", "empty-bearer", "garbage", "garbage-3-parts", "basic", "wrong-api-key", "api-key-prefix"],
)
async def test_publish_without_valid_credentials_is_401_problem(async_client, headers):
    async with subscriber("pub-401") as sub:
        response = await publish(async_client, "pub-401", b"must not arrive", headers=headers)
        assert_problem(response, 401)
        assert response.headers.get("www-authenticate")
        assert await sub.receive_nothing()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda cid: make_token(cid, issued_at=int(time.time()) - 3600, ttl=60), id="expired"),
        pytest.param(lambda cid: make_token(cid, secret="another-secret-0123456789abcdef0123"), id="wrong-secret"),
        pytest.param(alg_none_token, id="alg-none"),
        pytest.param(lambda cid: make_token(cid, algorithm="HS512"), id="hs512"),
        pytest.param(lambda cid: make_token(cid) + "x", id="tampered-signature"),
        pytest.param(lambda cid: make_token(cid, issued_at=int(time.time()) + 3600), id="issued-in-future-iat"),
    ],
)
async def test_publish_with_an_invalid_token_is_401_problem(async_client, token):
    async with subscriber("pub-bad-token") as sub:
        response = await publish(async_client, "pub-bad-token", headers=bearer(token("pub-bad-token")))
        assert_problem(response, 401)
        assert await sub.receive_nothing()


async def test_publish_with_token_missing_cid_is_401(async_client):
    token = make_token("no-cid", cid=None)
    assert_problem(await publish(async_client, "no-cid", headers=bearer(token)), 401)


async def test_publish_with_a_valid_token_for_another_channel_is_403_problem(async_client):
    async with subscriber("pub-victim") as sub:
        response = await publish(async_client, "pub-victim", headers=bearer(make_token("pub-other")))
        assert_problem(response, 403)
        assert await sub.receive_nothing()


@pytest.mark.parametrize(
    "raw_path",
    [
        "/webchannel/v1/channels/" + "a" * 129,
        "/webchannel/v1/channels/a%20b",
        "/webchannel/v1/channels/a%09b",
        "/webchannel/v1/channels/a%01b",
        "/webchannel/v1/channels/a%2Fb",
        "/webchannel/v1/channels/a/b",
    ],
    ids=["129-chars", "space", "tab", "control", "encoded-slash", "slash"],
)
async def test_publish_to_an_invalid_channel_id_is_400_or_404_problem(raw_path):
    # Through the ASGI application, which decodes the path as UTF-8 like Daphne does.
    response = await asgi_request("POST", raw_path, b"x", headers=API_KEY_HEADERS)
    assert response.status in (400, 404), response.status
    response.assert_problem(response.status)


BODIES = {
    "form-urlencoded": ("application/x-www-form-urlencoded", b"a=1&b=%20two&c=\xff"),
    "multipart": (
        "multipart/form-data; boundary=XyZ",
        b'--XyZ\r\nContent-Disposition: form-data; name="f"\r\n\r\nvalue\r\n--XyZ--\r\n',
    ),
    "json": ("application/json", b'{"progress": 42, "text": "d\\u00e9j\\u00e0"}'),
    "json-invalid": ("application/json", b"{not json"),
    "octet-stream": ("application/octet-stream", bytes(range(256))),
}


@pytest.mark.parametrize(("content_type", "body"), BODIES.values(), ids=BODIES.keys())
async def test_publish_relays_the_body_byte_for_byte_whatever_the_content_type(async_client, content_type, body):
    async with subscriber("pub-bytes") as sub:
        response = await publish(async_client, "pub-bytes", body, content_type=content_type)
        assert response.status_code == 204
        assert await receive_frame(sub) == body


async def test_publish_with_a_declared_charset_relays_the_bytes_undecoded():
    # Through the ASGI application: Django's test client would re-encode the body for the charset.
    body = "déjà vu".encode("latin-1")
    headers = {**bearer(make_token("pub-charset")), "content-type": "text/plain; charset=latin-1"}
    async with subscriber("pub-charset") as sub:
        response = await asgi_request("POST", channel_path("pub-charset"), body, headers=headers)
        assert response.status == 204
        assert await receive_frame(sub) == body


async def test_publish_without_content_type_relays_the_body():
    body = b"\x00no content type\xff"
    async with subscriber("pub-no-ct") as sub:
        response = await asgi_request("POST", channel_path("pub-no-ct"), body, headers=bearer(make_token("pub-no-ct")))
        assert response.status == 204
        assert await receive_frame(sub) == body


async def test_publish_to_a_percent_encoded_unicode_id_matches_the_decoded_id():
    async with subscriber("tést") as sub:
        response = await asgi_request(
            "POST", "/webchannel/v1/channels/t%C3%A9st", b"accent", headers=bearer(make_token("tést"))
        )
        assert response.status == 204
        assert await receive_frame(sub) == b"accent"


async def test_publish_to_a_percent_encoded_emoji_id_reaches_its_subscriber():
    channel_id = "job-🚀-进度"
    async with subscriber(channel_id) as sub:
        response = await asgi_request(
            "POST", channel_path(channel_id), b"emoji", headers=bearer(make_token(channel_id))
        )
        assert response.status == 204
        assert await receive_frame(sub) == b"emoji"


async def test_publish_does_not_reach_a_subscriber_of_another_channel(async_client):
    async with subscriber("pub-a") as a, subscriber("pub-b") as b:
        assert (await publish(async_client, "pub-a", b"for a")).status_code == 204
        assert await receive_frame(a) == b"for a"
        assert await b.receive_nothing()


@pytest.mark.parametrize("method", ["put", "patch"])
async def test_publish_path_with_another_method_is_405_problem_with_allow(async_client, method):
    response = await getattr(async_client, method)(channel_path("some-channel"), headers=API_KEY_HEADERS)
    assert_problem(response, 405)
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST", "DELETE"}  # info, publish, close


async def test_publish_counts_messages_and_bytes_in_metrics(async_client):
    messages = sample("webchannel_messages_published_total")
    payload_bytes = sample("webchannel_messages_published_bytes_total")
    assert (await publish(async_client, "pub-metrics", b"12345")).status_code == 204
    assert (await publish(async_client, "pub-metrics", b"")).status_code == 204
    assert sample("webchannel_messages_published_total") == messages + 2
    assert sample("webchannel_messages_published_bytes_total") == payload_bytes + 5


async def test_publish_is_503_problem_quickly_when_redis_is_unreachable(async_client, unreachable_redis_layer):
    messages = sample("webchannel_messages_published_total")
    async with asyncio.timeout(timeout(3)):
        response = await publish(async_client, "pub-down", b"lost", headers=API_KEY_HEADERS)
    assert response.status_code != 204
    assert_problem(response, 503)
    assert sample("webchannel_messages_published_total") == messages


@pytest.mark.slow
async def test_publish_is_503_problem_within_bounds_when_redis_never_answers(async_client, silent_redis_layer):
    started = time.monotonic()
    async with asyncio.timeout(timeout(5)):
        response = await publish(async_client, "pub-wedged", b"lost", headers=API_KEY_HEADERS)
    assert response.status_code != 204
    assert_problem(response, 503)
    assert time.monotonic() - started < timeout(4)
