"""The OpenAPI document (``channels_api/openapi.json``): valid OpenAPI 3.1, true to the routes.

The fuzzing test (tests/e2e/api/test_openapi_schemathesis.py) checks the server's answers against
it; these checks keep it complete: every route and method the server has is described, every
error is problem+json, and what the code builds (problem bodies) matches the schemas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import jsonschema
import pytest
from django.test import AsyncClient, RequestFactory
from django.urls import URLPattern
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from channels_api.openapi import CONTENT_TYPE, DOCUMENT
from channels_api.problems import PROBLEM_CONTENT_TYPE, problem_body
from channels_api.urls import urlpatterns

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DOCUMENT_URI = "urn:webchannel:openapi"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def schema_validator(document: dict[str, Any], pointer: str) -> jsonschema.Draft202012Validator:
    """A validator for the schema at ``pointer`` (e.g. ``#/components/schemas/Problem``), refs resolved."""
    registry = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(document))
    return jsonschema.Draft202012Validator({"$ref": DOCUMENT_URI + pointer}, registry=registry)


def documented_path(route: str) -> str:
    """``webchannel/v1/channels/<path:channel_id>`` -> ``/webchannel/v1/channels/{channelId}``."""

    def camel(match: re.Match[str]) -> str:
        head, *rest = match.group(1).split("_")
        return "{" + head + "".join(word.title() for word in rest) + "}"

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", camel, route)


def concrete_path(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", "some-id", route)


async def allowed_methods(pattern: URLPattern, route: str) -> set[str]:
    """The methods a view accepts, from the ``Allow`` header of its 405 answer to PATCH."""
    request = RequestFactory().patch(concrete_path(route))
    response = await pattern.callback(request, **({"channel_id": "some-id"} if "<" in route else {}))
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    return {method.strip().lower() for method in response["Allow"].split(",")}


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema, including unresolved $refs


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


async def test_every_route_and_method_of_the_server_is_documented(document: dict[str, Any]) -> None:
    documented = {path: {m for m in HTTP_METHODS if m in item} for path, item in document["paths"].items()}
    for pattern in urlpatterns:
        route = str(pattern.pattern)
        path = documented_path(route)
        assert path in documented, f"{route} is not in the OpenAPI document"
        # HEAD is the bodiless GET the views also answer; it is not described on its own.
        assert await allowed_methods(pattern, route) - {"head"} == documented[path], route


def test_every_documented_path_is_served(document: dict[str, Any]) -> None:
    routes = {documented_path(str(pattern.pattern)) for pattern in urlpatterns}
    for path in document["paths"]:
        assert path in routes, f"{path} is documented but not routed"


def test_every_error_response_is_problem_json(document: dict[str, Any]) -> None:
    shared = document["components"]["responses"]
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            response = shared[response["$ref"].rsplit("/", 1)[1]] if "$ref" in response else response
            content = response["content"]
            assert list(content) == [PROBLEM_CONTENT_TYPE], (path, method, status)
            assert content[PROBLEM_CONTENT_TYPE]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_problem_bodies_the_server_builds_match_the_problem_schema(document: dict[str, Any]) -> None:
    validator = schema_validator(document, "#/components/schemas/Problem")
    for status in (HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, HTTPStatus.SERVICE_UNAVAILABLE):
        validator.validate(json.loads(problem_body(status, "why")))
    validator.validate(json.loads(problem_body(HTTPStatus.NOT_FOUND)))


@pytest.mark.parametrize("channel_id", ["a", "x" * 128, "é😀-_.~:@!", "%41"])
def test_valid_channel_ids_match_the_channel_id_schema(document: dict[str, Any], channel_id: str) -> None:
    schema_validator(document, "#/components/schemas/ChannelId").validate(channel_id)


@pytest.mark.parametrize("channel_id", ["", "x" * 129, "a/b", "a b", "a\tb", "a\x00b", "a\x7fb", "a\u2003b"])
def test_invalid_channel_ids_fail_the_channel_id_schema(document: dict[str, Any], channel_id: str) -> None:
    assert not schema_validator(document, "#/components/schemas/ChannelId").is_valid(channel_id)


async def test_the_document_is_served_as_stored_without_credentials() -> None:
    response = await AsyncClient().get("/webchannel/v1/openapi.json")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == CONTENT_TYPE
    assert response.content == DOCUMENT.read_bytes()
