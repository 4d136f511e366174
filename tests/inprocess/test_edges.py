"""Edges a new user hits: malformed percent-encoding in ids, a wrong versus a missing API key,
and refused subscribes counted under stable reason labels."""

from __future__ import annotations

import time
from urllib.parse import unquote

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from tests.common import assert_problem, make_token
from tests.harness import API_KEY, timeout
from webchannel_project.asgi import application

from .helpers import API_KEY_HEADERS, CREATE_PATH, AsgiResponse, asgi_headers, channel_path, sample, subscriber

REFUSED = "webchannel_websocket_refused_total"


def as_daphne_sends_it(scope: dict, raw_path: str) -> None:
    """Set ``path`` and ``raw_path`` as Daphne does: the path percent-decoded leniently, the raw bytes kept."""
    scope["path"] = unquote(raw_path)
    scope["raw_path"] = raw_path.encode("ascii")


async def post_raw(raw_path: str, body: bytes = b"x", headers=None) -> AsgiResponse:
    communicator = HttpCommunicator(application, "POST", "/", body=body, headers=asgi_headers(headers, body))
    as_daphne_sends_it(communicator.scope, raw_path)
    try:
        response = await communicator.get_response(timeout=timeout(5))
    finally:
        communicator.stop(exceptions=False)
    return AsgiResponse(response["status"], response["headers"], response["body"])


async def subscribe_raw(raw_path: str, token: str) -> bool:
    communicator = WebsocketCommunicator(application, f"/?access_token={token}")
    as_daphne_sends_it(communicator.scope, raw_path)
    try:
        connected, _ = await communicator.connect(timeout(5))
        return bool(connected)
    finally:
        await communicator.disconnect(timeout=timeout(5))


# --- malformed percent-encoding in the id of a URL ---------------------------------------------

MALFORMED = {
    "lone-FF": ("%FF", "\ufffd"),  # Daphne would route U+FFFD, a valid id
    "FF-inside": ("a%FFb", "a\ufffdb"),
    "ZZ": ("%ZZ", "%ZZ"),  # Daphne would route the literal text, a valid id
    "truncated": ("ab%4", "ab%4"),
}


@pytest.mark.parametrize(("raw", "routed"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_publish_to_an_id_with_malformed_percent_encoding_is_400_problem(raw, routed):
    async with subscriber(routed) as sub:  # whoever holds the lenient reading must get nothing
        response = await post_raw(f"{CREATE_PATH}/{raw}", headers=API_KEY_HEADERS)
        document = response.assert_problem(400)
        assert "percent" in document["detail"] or "hex digits" in document["detail"], document
        assert await sub.receive_nothing()


@pytest.mark.parametrize(("raw", "routed"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_subscribe_to_an_id_with_malformed_percent_encoding_is_refused_as_invalid_channel_id(raw, routed):
    before = sample(REFUSED, {"reason": "invalid_channel_id"})
    assert await subscribe_raw(f"{CREATE_PATH}/{raw}", make_token(routed)) is False
    assert sample(REFUSED, {"reason": "invalid_channel_id"}) == before + 1


async def test_a_properly_encoded_replacement_character_is_still_a_valid_id():
    async with subscriber("\ufffd"):
        response = await post_raw(f"{CREATE_PATH}/%EF%BF%BD", headers=API_KEY_HEADERS)
    assert response.status == 204, response.body


# --- a wrong API key is not a missing one ---------------------------------------------------------


@pytest.mark.parametrize("headers", [{"x-api-key": "wrong-key"}, {"x-api-key": API_KEY + "x"}], ids=["wrong", "longer"])
async def test_create_with_a_wrong_api_key_says_it_was_not_accepted(async_client, headers):
    response = await async_client.post(CREATE_PATH, data=b"", content_type="application/json", headers=headers)
    document = assert_problem(response, 401)
    assert document["detail"] == "the x-api-key was not accepted"
    assert response.headers["www-authenticate"].startswith("ApiKey")


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}], ids=["missing", "empty"])
async def test_create_without_an_api_key_asks_for_one(async_client, headers):
    response = await async_client.post(CREATE_PATH, data=b"", content_type="application/json", headers=headers)
    document = assert_problem(response, 401)
    assert document["detail"] == "an x-api-key header is required"


async def test_publish_with_a_wrong_api_key_says_it_was_not_accepted(async_client):
    response = await async_client.post(
        channel_path("edge-key"), data=b"x", content_type="text/plain", headers={"x-api-key": "wrong-key"}
    )
    assert assert_problem(response, 401)["detail"] == "the x-api-key was not accepted"


async def test_publish_without_credentials_asks_for_a_token_or_a_key(async_client):
    response = await async_client.post(channel_path("edge-key"), data=b"x", content_type="text/plain")
    assert assert_problem(response, 401)["detail"] == "an Authorization: Bearer token or x-api-key is required"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_publish_with_a_wrong_api_key_but_a_valid_token_is_accepted(async_client):
    headers = {"x-api-key": "wrong-key", "authorization": f"Bearer {make_token('edge-both')}"}
    response = await async_client.post(channel_path("edge-both"), data=b"x", content_type="text/plain", headers=headers)
    assert response.status_code == 204


# --- refused subscribes are counted under stable labels ---------------------------------------------


def query(channel_id: str, token: str) -> str:
    return f"{channel_path(channel_id)}?access_token={token}"


REASONS = {
    "invalid_token": lambda: query("edge-r", "garbage"),
    "no-token": lambda: channel_path("edge-r"),
    "expired_token": lambda: query("edge-r", make_token("edge-r", issued_at=int(time.time()) - 3600, ttl=60)),
    "wrong_channel": lambda: query("edge-r", make_token("edge-other")),
    "invalid_channel_id": lambda: query("a b", make_token("a b")),
}


@pytest.mark.parametrize("case", REASONS, ids=REASONS.keys())
async def test_each_refusal_is_counted_under_its_reason_label(case):
    reason = "invalid_token" if case == "no-token" else case
    before = {label: sample(REFUSED, {"reason": label}) for label in ("invalid_token", *REASONS)}
    communicator = WebsocketCommunicator(application, REASONS[case]())
    try:
        connected, _ = await communicator.connect(timeout(5))
    finally:
        await communicator.disconnect(timeout=timeout(5))
    assert connected is False
    after = {label: sample(REFUSED, {"reason": label}) for label in before}
    assert {label: after[label] - before[label] for label in before if after[label] != before[label]} == {reason: 1}


async def test_a_subscribe_the_layer_cannot_take_is_counted_as_layer_unavailable(unreachable_redis_layer):
    before = sample(REFUSED, {"reason": "layer_unavailable"})
    communicator = WebsocketCommunicator(application, query("edge-layer", make_token("edge-layer")))
    try:
        await communicator.connect(timeout(5))
        assert await communicator.receive_output(timeout(5)) == {
            "type": "websocket.close",
            "code": 4013,
            "reason": "try again later",
            "webchannel.refusal": "layer_unavailable",
        }
    finally:
        await communicator.disconnect(timeout=timeout(5))
    assert sample(REFUSED, {"reason": "layer_unavailable"}) == before + 1
