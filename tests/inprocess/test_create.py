"""POST /webchannel/v1/channels: API key, body forms, id rules, tokens, problem responses."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import jwt
import pytest

from tests.common import assert_problem, token_claims
from tests.harness import API_KEY, SECRET_KEY

from .helpers import API_KEY_HEADERS, CREATE_PATH

URL_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{21,}")


async def create(async_client, body: bytes = b"", content_type: str = "application/json", headers=None):
    return await async_client.post(
        CREATE_PATH, data=body, content_type=content_type, headers=API_KEY_HEADERS if headers is None else headers
    )


def assert_created(response) -> dict:
    assert response.status_code == 200, response.content
    assert response.headers["content-type"].split(";")[0] == "application/json"
    document = json.loads(response.content)
    assert isinstance(document["channelId"], str)
    assert isinstance(document["token"], str)
    assert isinstance(document["expiresAt"], str)
    return document


def claims_of(token: str) -> dict:
    return jwt.decode(token, SECRET_KEY, algorithms=["HS256"])


@pytest.mark.parametrize("body", [b"", b"{}"], ids=["empty", "empty-object"])
async def test_create_without_channel_id_generates_a_url_safe_id_of_at_least_21_chars(async_client, body):
    document = assert_created(await create(async_client, body))
    assert URL_SAFE_ID.fullmatch(document["channelId"]), document["channelId"]
    assert claims_of(document["token"])["cid"] == document["channelId"]


async def test_generated_channel_ids_differ_between_calls(async_client):
    ids = {assert_created(await create(async_client))["channelId"] for _ in range(20)}
    assert len(ids) == 20


async def test_create_with_channel_id_returns_that_id_and_a_token_for_it(async_client):
    document = assert_created(await create(async_client, b'{"channelId": "x"}'))
    assert document["channelId"] == "x"
    assert claims_of(document["token"])["cid"] == "x"


async def test_create_accepts_a_unicode_channel_id(async_client):
    channel_id = "tâche-✓-进度-🚀"
    body = json.dumps({"channelId": channel_id}).encode()
    document = assert_created(await create(async_client, body))
    assert document["channelId"] == channel_id
    assert claims_of(document["token"])["cid"] == channel_id


async def test_create_accepts_a_128_character_channel_id(async_client):
    channel_id = "é" * 128
    document = assert_created(await create(async_client, json.dumps({"channelId": channel_id}).encode()))
    assert document["channelId"] == channel_id


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json"])
async def test_create_reads_the_body_as_json_whatever_the_content_type(async_client, content_type):
    document = assert_created(await create(async_client, b'{"channelId":"a"}', content_type=content_type))
    assert document["channelId"] == "a"


async def test_token_is_hs256_with_cid_iat_and_exp_equal_to_iat_plus_ttl(async_client, settings):
    before = int(time.time())
    document = assert_created(await create(async_client, b'{"channelId": "claims"}'))
    after = int(time.time())
    token = document["token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = claims_of(token)
    assert claims["cid"] == "claims"
    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + settings.WEBCHANNEL.channel.ttl
    # The README's browser recipe: JSON.parse(atob(token.split(".")[1])).cid
    assert token_claims(token)["cid"] == "claims"


async def test_expires_at_is_the_token_expiry(async_client):
    document = assert_created(await create(async_client))
    exp = claims_of(document["token"])["exp"]
    expires_at = document["expiresAt"].replace("Z", "+00:00")
    assert int(datetime.fromisoformat(expires_at).timestamp()) == exp


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "wrong"},
        {"x-api-key": API_KEY + "x"},
        {"x-api-key": ""},
        {"authorization": f"Bearer {API_KEY}"},
    ],
    ids=["missing", "wrong", "longer", "empty", "as-bearer"],
)
async def test_create_without_a_valid_api_key_is_401_problem_with_www_authenticate(async_client, headers):
    response = await create(async_client, b"{}", headers=headers)
    assert_problem(response, 401)
    assert response.headers.get("www-authenticate")


INVALID_BODIES = {
    "invalid-json": b"{not json",
    "truncated-object": b'{"channelId": "a"',
    "array": b"[]",
    "array-with-object": b'[{"channelId": "a"}]',
    "string": b'"a"',
    "number": b"5",
    "true": b"true",
    "null": b"null",
    "channel-id-number": b'{"channelId": 5}',
    "channel-id-null": b'{"channelId": null}',
    "channel-id-list": b'{"channelId": ["a"]}',
    "channel-id-object": b'{"channelId": {"a": 1}}',
    "unknown-field": b'{"channelId": "a", "extra": 1}',
    "only-unknown-field": b'{"name": "a"}',
    "empty-id": b'{"channelId": ""}',
    "129-char-id": json.dumps({"channelId": "a" * 129}).encode(),
    "slash": b'{"channelId": "a/b"}',
    "space": b'{"channelId": "a b"}',
    "tab": b'{"channelId": "a\\tb"}',
    "newline": b'{"channelId": "a\\nb"}',
    "no-break-space": b'{"channelId": "a\\u00a0b"}',
    "ideographic-space": b'{"channelId": "a\\u3000b"}',
    "nul": b'{"channelId": "a\\u0000b"}',
    "control-char": b'{"channelId": "a\\u0001b"}',
    "del": b'{"channelId": "a\\u007fb"}',
    "c1-control": b'{"channelId": "a\\u0085b"}',
    "lone-surrogate": b'{"channelId": "\\ud800"}',
    "lone-low-surrogate": b'{"channelId": "a\\udfffb"}',
    "deeply-nested": b"[" * 5000,
    "deeply-nested-objects": b'{"a":' * 5000,
    "invalid-utf8": b'{"channelId": "\xff\xfe"}',
    "latin1": '{"channelId": "café"}'.encode("latin-1"),
    "utf16": '{"channelId": "a"}'.encode("utf-16"),
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_create_with_an_invalid_body_is_400_problem(async_client, body):
    assert_problem(await create(async_client, body), 400)


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
async def test_create_path_with_another_method_is_405_problem_with_allow(async_client, method):
    response = await getattr(async_client, method)(CREATE_PATH, headers=API_KEY_HEADERS)
    assert_problem(response, 405)
    assert "POST" in [m.strip() for m in response.headers["allow"].split(",")]


async def test_unknown_path_is_404_problem(async_client):
    assert_problem(await async_client.get("/webchannel/v1/nothing-here"), 404)
