"""The browser subscriber module (``static/webchannel.js``), served at ``/webchannel/v1/client.js``.

Public and the same for everybody: no credentials are asked for, any origin may import it
(module scripts are fetched with CORS), and caches may keep it briefly and then revalidate
it with its ETag, so a new release reaches browsers within minutes.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from django.http import HttpRequest, HttpResponse

from .problems import api_view

SCRIPT = Path(__file__).resolve().parent / "static" / "webchannel.js"
CONTENT_TYPE = "text/javascript; charset=utf-8"
CACHE_CONTROL = "public, max-age=300"


@functools.cache
def _script() -> tuple[bytes, str]:
    """The module's bytes and their strong ETag, read once per process."""
    body = SCRIPT.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


@api_view("GET", "HEAD")
async def client_js(request: HttpRequest) -> HttpResponse:
    """The ES module; 304 when the caller already holds this version."""
    body, etag = _script()
    if _etag_matches(request.headers.get("If-None-Match"), etag):
        response = HttpResponse(status=304)
        del response["Content-Type"]  # a 304 has no content
    else:
        response = HttpResponse(body, content_type=CONTENT_TYPE)
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    response["Access-Control-Allow-Origin"] = "*"
    return response
