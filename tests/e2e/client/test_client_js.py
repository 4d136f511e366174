"""The browser subscriber module's endpoint, ``/webchannel/v1/client.js``, over real HTTP.

What Chromium does with the module is tested in tests/browser/test_client_js.py.
"""

from __future__ import annotations

import re

import httpx

from tests.harness import API_KEY, ServerProcess
from tests.unit.test_client_js import MODULE_FILE

MODULE_PATH = "/webchannel/v1/client.js"


def test_client_js_is_the_repository_file_public_and_cacheable(shared_server: ServerProcess) -> None:
    response = httpx.get(shared_server.url + MODULE_PATH, headers={"Origin": "https://app.example"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.content == MODULE_FILE.read_bytes()
    assert response.headers["access-control-allow-origin"] == "*"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
    assert "max-age=300" in response.headers["cache-control"]

    again = httpx.get(shared_server.url + MODULE_PATH, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == response.headers["etag"]
    other = httpx.get(shared_server.url + MODULE_PATH, headers={"If-None-Match": '"an-older-version"'})
    assert other.status_code == 200


def test_client_js_answers_only_get_and_head(shared_server: ServerProcess) -> None:
    head = httpx.head(shared_server.url + MODULE_PATH)
    assert head.status_code == 200
    assert head.content == b""
    post = httpx.post(shared_server.url + MODULE_PATH, headers={"x-api-key": API_KEY})
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
