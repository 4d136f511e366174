"""In-process publish from another process: ``python manage.py shell -c`` with the serving
process's configuration publishes through a real Redis to that process's subscribers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.common import make_token
from tests.e2e.helpers import recv_binary, subscribe
from tests.harness import REPO, RedisServer, ServerProcess, base_config, clean_env, serving, timeout, toml

pytestmark = pytest.mark.slow


def manage_shell(config_file: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py shell -c CODE`` configured by ``config_file`` (as a worker would be)."""
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=clean_env(WC_CONFIG_FILE=str(config_file), WC_ENV_FILE=""),
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )


@pytest.fixture
def redis_config(tmp_path: Path, redis_server: RedisServer) -> Path:
    """The shared configuration file: the test's Redis, the test secret and API key."""
    path = tmp_path / "shared.toml"
    path.write_text(toml(base_config(redis={"url": redis_server.url})))
    return path


@pytest.fixture
def server(tmp_path: Path, redis_config: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path, redis_config.read_text()) as process:
        yield process


async def test_publish_sync_in_a_manage_py_shell_reaches_a_subscriber_of_a_serving_process(server, redis_config):
    async with subscribe(server.url, "shell-pub", make_token("shell-pub")) as ws:
        result = manage_shell(
            redis_config,
            "from channels_api import publish_sync; "
            "print(publish_sync('shell-pub', b'\\x00from a shell\\xff')); "
            "publish_sync('shell-pub', b'second')",
        )
        assert result.returncode == 0, result.stderr
        assert await recv_binary(ws) == b"\x00from a shell\xff"
        assert await recv_binary(ws) == b"second"
    # the subscribers it reached, in every process (the serving process's one), as over HTTP
    assert result.stdout.strip().splitlines()[-1] == "1", result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "destroyed" not in result.stderr, result.stderr


async def test_a_channel_created_in_a_shell_subscribes_on_the_serving_process(server, redis_config):
    result = manage_shell(
        redis_config,
        "import json; from channels_api import create_channel; print(json.dumps(create_channel('made-in-shell')))",
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout.strip().splitlines()[-1])
    assert created["channelId"] == "made-in-shell"
    async with subscribe(server.url, "made-in-shell", created["token"]) as ws:
        published = manage_shell(
            redis_config, "from channels_api import publish_sync; publish_sync('made-in-shell', b'hi')"
        )
        assert published.returncode == 0, published.stderr
        assert await recv_binary(ws) == b"hi"


def test_a_bad_channel_id_in_a_shell_raises_invalid_channel_id(redis_config):
    result = manage_shell(redis_config, "from channels_api import publish_sync; publish_sync('has space', b'x')")
    assert result.returncode != 0
    assert "InvalidChannelId: channel id must not contain whitespace" in result.stderr


def test_a_too_large_message_in_a_shell_raises_message_too_large(redis_config):
    result = manage_shell(
        redis_config, "from channels_api import publish_sync; publish_sync('big', b'x' * (512 * 1024 + 1))"
    )
    assert result.returncode != 0
    assert "MessageTooLarge: the message is 524289 bytes; channel.max_message_size is 524288" in result.stderr


def test_a_shell_publish_with_redis_down_raises_layer_unavailable_within_two_seconds(redis_config, redis_server):
    redis_server.stop()
    code = (
        "import time\n"
        "from channels_api import LayerUnavailable, publish_sync\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    publish_sync('down', b'x')\n"
        "except LayerUnavailable as exc:\n"
        "    print('LayerUnavailable', round(time.monotonic() - started, 3), exc)\n"
    )
    result = manage_shell(redis_config, code)
    assert result.returncode == 0, result.stderr
    word, elapsed, *message = result.stdout.strip().splitlines()[-1].split()
    assert word == "LayerUnavailable", result.stdout
    assert float(elapsed) < timeout(2.5)
    assert "the channel layer is unavailable" in " ".join(message)
