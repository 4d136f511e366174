"""examples/django_project, an existing-style Django project with webchannel added, end to end:
served by Daphne with a real Redis, its page (a channel made with ``create_channel()``) open in
headless Chromium, its ``publish_progress`` command run as a separate process: the page shows 100%.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.common import SECRET_KEY
from tests.harness import REPO, RedisServer, clean_env, free_port, timeout, toml, wait_for

from .test_browser import CHROMIUM, CHROMIUM_ARGS, require_browser

pytestmark = pytest.mark.slow

PROJECT = REPO / "examples" / "django_project"


def project_env(config: Path) -> dict[str, str]:
    """The example project's processes: webchannel importable from the checkout, configured by ``config``."""
    return clean_env(WC_CONFIG_FILE=str(config), WC_ENV_FILE="", PYTHONPATH=str(REPO))


def accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def daphne(config: Path, log_path: Path) -> Iterator[str]:
    """``daphne mysite.asgi:application`` in the example project on a free port; its base URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application"],
            cwd=PROJECT,
            env=project_env(config),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"daphne exited with {proc.returncode}:\n{log_path.read_text()}")
            return accepts_connections(port)

        wait_for(listening, 30, "daphne to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout(5))


@pytest.fixture
def project_config(tmp_path: Path, redis_server: RedisServer) -> Path:
    path = tmp_path / "webchannel.toml"
    path.write_text(toml({"channel": {"secret_key": SECRET_KEY}, "redis": {"url": redis_server.url}}))
    return path


async def test_the_example_project_page_shows_the_progress_its_command_publishes(tmp_path, project_config):
    require_browser()
    from playwright.async_api import async_playwright

    with daphne(project_config, tmp_path / "daphne.log") as base_url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                response = await page.goto(f"{base_url}/progress/")
                assert response is not None
                assert response.status == 200
                await page.wait_for_function("document.body.dataset.state === 'subscribed'", timeout=timeout(10) * 1000)
                channel_id = json.loads(await page.text_content("#channel-id-json") or "null")
                assert await page.text_content("#percent") == "0%"

                command = subprocess.run(
                    [sys.executable, "manage.py", "publish_progress", channel_id, "--steps", "4", "--interval", "0"],
                    cwd=PROJECT,
                    env=project_env(project_config),
                    capture_output=True,
                    text=True,
                    timeout=timeout(60),
                )
                assert command.returncode == 0, command.stderr
                assert command.stdout.splitlines()[-1] == "100% sent to 1 subscriber(s)", command.stdout

                await page.wait_for_function(
                    "document.getElementById('percent').textContent === '100%'", timeout=timeout(10) * 1000
                )
                assert await page.evaluate("document.getElementById('bar').value") == 100
                assert await page.evaluate("document.body.dataset.state") == "subscribed"
                assert errors == []
            finally:
                await browser.close()


def test_the_example_command_refuses_a_bad_channel_id_in_one_line(project_config):
    result = subprocess.run(
        [sys.executable, "manage.py", "publish_progress", "has space", "--interval", "0"],
        cwd=PROJECT,
        env=project_env(project_config),
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: channel id must not contain whitespace"


def test_the_example_project_exits_with_one_line_on_a_bad_webchannel_configuration(project_config):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT,
        env={**project_env(project_config), "WC_CHANNEL__TTL": "soon"},
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("webchannel: configuration error:")
    assert "WC_CHANNEL__TTL" in lines[0]
