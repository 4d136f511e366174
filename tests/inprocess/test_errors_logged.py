"""Every unexpected exception in a view is answered 500 in problem+json and logged exactly once,
at ERROR with its traceback; expected problems (4xx, 503) are not logged by Django at all.

The views are made to fail by replacing what they call, through the whole ASGI application
(middleware, the lean handler, Django's exception handling and the problem handlers).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import pytest

from channels_api import views
from tests.common import make_token

from .helpers import API_KEY_HEADERS, asgi_request, channel_path

SECRET_WORDS = ("test-api-key", "access_token")


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


def failing(*args: object, **kwargs: object) -> bytes:
    raise RuntimeError("the exposition failed")


async def test_an_exception_in_a_view_is_a_500_problem_logged_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views.metrics, "exposition", failing)
    caplog.set_level(logging.INFO)
    response = await asgi_request("GET", "/metrics", headers=API_KEY_HEADERS)
    document = response.assert_problem(HTTPStatus.INTERNAL_SERVER_ERROR)
    assert document["detail"] == "unexpected server error"
    assert b"exposition failed" not in response.body  # the exception stays in the log
    (record,) = errors(caplog)
    assert record.name == "django.request"
    assert record.getMessage() == "Internal Server Error: /metrics"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    text = caplog.text
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: the exposition failed" in text
    assert not any(word in text for word in SECRET_WORDS)


async def test_an_exception_while_publishing_is_logged_once_without_the_token(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def send_failing(channel_id: str, data: bytes) -> None:
        raise KeyError("unexpected")

    monkeypatch.setattr(views, "send_to_channel", send_failing)
    caplog.set_level(logging.INFO)
    token = make_token("errors-logged")
    path = f"{channel_path('errors-logged')}?access_token={token}"
    response = await asgi_request("POST", path, b"x", headers={"authorization": f"Bearer {token}"})
    response.assert_problem(HTTPStatus.INTERNAL_SERVER_ERROR)
    (record,) = errors(caplog)
    assert record.getMessage() == "Internal Server Error: /webchannel/v1/channels/errors-logged"
    assert token not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/webchannel/v1/channels", HTTPStatus.UNAUTHORIZED),
        ("GET", "/no/such/path", HTTPStatus.NOT_FOUND),
        ("PUT", "/healthz", HTTPStatus.METHOD_NOT_ALLOWED),
    ],
)
async def test_expected_problems_are_not_logged_as_errors(
    caplog: pytest.LogCaptureFixture, method: str, path: str, status: HTTPStatus
) -> None:
    caplog.set_level(logging.INFO)
    response = await asgi_request(method, path)
    response.assert_problem(status)
    assert errors(caplog) == []
    assert not [record for record in caplog.records if record.name.startswith("django.request")]
