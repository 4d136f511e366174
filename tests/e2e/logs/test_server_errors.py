"""An unexpected exception in a real server is one ERROR line with its traceback, and no secret."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.common import API_KEY, assert_problem, make_token
from tests.e2e.logs.crash_urls import CRASH_MESSAGE
from tests.harness import base_config, serving, timeout, wait_for

pytestmark = pytest.mark.slow  # a server of its own


def test_an_exception_in_a_view_is_one_error_line_with_its_traceback_and_no_secret(tmp_path: Path) -> None:
    """No request from outside makes a webchannel view fail, so a test-only route does
    (``tests/e2e/logs/crash_settings.py``), in the real server with its real logging."""
    token = make_token("crash")
    env = {"DJANGO_SETTINGS_MODULE": "tests.e2e.logs.crash_settings"}
    with serving(tmp_path, base_config(), env=env) as server:
        response = httpx.get(
            f"{server.url}/test-only/crash?access_token={token}",
            headers={"x-api-key": API_KEY, "authorization": f"Bearer {token}"},
            timeout=timeout(10),
        )
        assert_problem(response, 500)
        assert CRASH_MESSAGE not in response.text
        wait_for(lambda: '"GET /test-only/crash?access_token=[redacted]" 500' in server.output(), 10, "the access line")
    output = server.output()
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert errors[0].endswith("django.request: Internal Server Error: /test-only/crash"), errors
    after = output.split(errors[0], 1)[1]
    assert after.lstrip("\n").startswith("Traceback (most recent call last):"), after[:300]
    assert f"RuntimeError: {CRASH_MESSAGE}" in after
    assert token not in output
    assert API_KEY not in output
