"""channels_api.exceptions: one root, the tree its docstring draws, and refusal reasons as metric labels."""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest

from channels_api import auth, config, names, problems, readiness
from channels_api import exceptions as exc
from channels_api.events import CloseCode, RefusalReason

TREE = {
    exc.ConfigError: exc.WebchannelError,
    exc.TokenError: exc.WebchannelError,
    exc.InvalidToken: exc.TokenError,
    exc.ExpiredToken: exc.InvalidToken,
    exc.WrongChannel: exc.TokenError,
    exc.ScopeDenied: exc.WebchannelError,
    exc.InvalidChannelId: exc.WebchannelError,
    exc.LayerUnavailable: exc.WebchannelError,
    exc.RateLimited: exc.WebchannelError,
    exc.Problem: exc.WebchannelError,
}


@pytest.mark.parametrize(("child", "parent"), TREE.items(), ids=lambda c: c.__name__)
def test_every_error_hangs_from_its_parent(child, parent):
    assert child.__bases__[0] is parent


def test_the_module_docstring_draws_every_error():
    drawn = set(re.findall(r"[├└]── (\w+)", exc.__doc__ or ""))
    assert drawn == {cls.__name__ for cls in TREE}


def test_an_invalid_channel_id_is_still_a_value_error():
    assert issubclass(exc.InvalidChannelId, ValueError)


def test_expired_and_invalid_tokens_are_told_apart_but_both_are_invalid():
    assert issubclass(exc.ExpiredToken, exc.InvalidToken)
    assert not issubclass(exc.WrongChannel, exc.InvalidToken)


@pytest.mark.parametrize(
    ("error", "label"),
    [
        (exc.InvalidToken, "invalid_token"),
        (exc.ExpiredToken, "expired_token"),
        (exc.WrongChannel, "wrong_channel"),
        (exc.InvalidChannelId, "invalid_channel_id"),
        (exc.LayerUnavailable, "layer_unavailable"),
    ],
)
def test_refusals_are_counted_under_stable_labels_not_class_names(error, label):
    assert error.refusal.value == label
    assert str(error.refusal) == label


def test_refusal_reason_values_are_the_documented_labels():
    assert {reason.value for reason in RefusalReason} == {
        "invalid_token",
        "expired_token",
        "wrong_channel",
        "invalid_channel_id",
        "max_connections",
        "layer_unavailable",
        "invalid_frames",
    }


def test_close_code_labels_are_the_numbers():
    assert {code.label for code in CloseCode} == {str(int(code)) for code in CloseCode}
    assert CloseCode.TOO_SLOW.label == "4008"


def test_problem_carries_its_status_detail_and_headers():
    problem = exc.Problem(HTTPStatus.UNAUTHORIZED, "no", headers={"WWW-Authenticate": "Basic"})
    assert (problem.status, problem.detail) == (HTTPStatus.UNAUTHORIZED, "no")
    assert problem.headers == {"WWW-Authenticate": "Basic"}
    assert str(exc.Problem(HTTPStatus.NOT_FOUND)) == "Not Found"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (auth, "InvalidToken"),
        (auth, "ExpiredToken"),
        (auth, "WrongChannel"),
        (auth, "TokenError"),
        (names, "InvalidChannelId"),
        (readiness, "LayerUnavailable"),
        (problems, "Problem"),
        (config, "ConfigError"),
    ],
)
def test_the_modules_that_raise_them_still_export_them(module, name):
    assert getattr(module, name) is getattr(exc, name)
