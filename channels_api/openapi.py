"""The OpenAPI 3.1 document of the HTTP API, served at ``/webchannel/v1/openapi.json``.

The document is kept by hand in ``openapi.json`` beside this module, the one place it lives;
a unit test checks it against the routes and a fuzzing test checks the server's answers
against it. Public: no credentials, and any origin may read it (API tools run on other origins).
"""

from __future__ import annotations

import functools
from pathlib import Path

from django.http import HttpRequest, HttpResponse

from .problems import api_view

DOCUMENT = Path(__file__).resolve().parent / "openapi.json"
# Plain JSON: browsers show it and every OpenAPI tool reads it, which the registered
# application/vnd.oai.openapi+json type does not guarantee.
CONTENT_TYPE = "application/json"
CACHE_CONTROL = "public, max-age=300"


@functools.cache
def _document() -> bytes:
    """The document's bytes, read once per process."""
    return DOCUMENT.read_bytes()


@api_view("GET", "HEAD")
async def openapi_document(request: HttpRequest) -> HttpResponse:
    """The OpenAPI document, as stored."""
    response = HttpResponse(_document(), content_type=CONTENT_TYPE)
    response["Cache-Control"] = CACHE_CONTROL
    response["Access-Control-Allow-Origin"] = "*"
    return response
