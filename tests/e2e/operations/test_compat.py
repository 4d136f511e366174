"""A dependency that lost an internal the server relies on stops the server at startup with one line.

The server's process gets a ``sitecustomize`` on ``PYTHONPATH`` that takes an internal away
before the command runs (as an upgrade renaming it would); ``manage.py serve`` (also as the
supervisor of ``--workers``) and ``manage.py runserver`` then exit with status 2 and print
one line naming the package, its version and the missing internal, and serve nothing.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.helpers import non_empty_lines, wait_exit
from tests.harness import REPO, ServerProcess, base_config, clean_env, toml

pytestmark = pytest.mark.slow

# FileDescriptor.__init__ without the _tempDataLen that ws_protocol reads on every write.
TWISTED_WITHOUT_TEMP_DATA_LEN = """
    from twisted.internet import abstract

    def __init__(self, reactor=None):
        self.reactor = reactor
        self._tempDataBuffer = []

    abstract.FileDescriptor.__init__ = __init__
"""
# The receive loop that redis_layer replaces, renamed away.
CHANNELS_REDIS_WITHOUT_DO_RECEIVING = """
    import channels_redis.pubsub

    del channels_redis.pubsub.RedisSingleShardConnection._do_receiving
"""
REDIS = {"url": "redis://127.0.0.1:1/0"}  # never dialled: the check comes first

CASES = [
    pytest.param(
        TWISTED_WITHOUT_TEMP_DATA_LEN,
        ["serve"],
        {},
        "twisted",
        "twisted.internet.tcp.Server._tempDataLen",
        id="serve-twisted",
    ),
    pytest.param(
        TWISTED_WITHOUT_TEMP_DATA_LEN,
        ["runserver", "--noreload", "127.0.0.1:0"],
        {},
        "twisted",
        "twisted.internet.tcp.Server._tempDataLen",
        id="runserver-twisted",
    ),
    pytest.param(
        CHANNELS_REDIS_WITHOUT_DO_RECEIVING,
        ["serve"],
        {"redis": REDIS},
        "channels-redis",
        "channels_redis.pubsub.RedisSingleShardConnection._do_receiving",
        id="serve-redis",
    ),
    pytest.param(
        CHANNELS_REDIS_WITHOUT_DO_RECEIVING,
        ["serve", "--workers", "2"],
        {"redis": REDIS},
        "channels-redis",
        "channels_redis.pubsub.RedisSingleShardConnection._do_receiving",
        id="serve-workers-redis",
    ),
]


@pytest.mark.parametrize(("shim", "command", "sections", "distribution", "missing"), CASES)
def test_a_missing_internal_exits_2_with_one_line_naming_package_version_and_internal(
    tmp_path: Path, shim: str, command: list[str], sections: dict[str, dict[str, str]], distribution: str, missing: str
) -> None:
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    (shim_dir / "sitecustomize.py").write_text(textwrap.dedent(shim))
    config = tmp_path / "config.toml"
    config.write_text(toml(base_config(**sections)))
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *command, "-c", str(config)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(WC_LOG="info", PYTHONPATH=str(shim_dir)),
        )
    server = ServerProcess(proc, log)
    try:
        assert wait_exit(server, 20) == 2, server.output()
    finally:
        server.stop()
    version = importlib.metadata.version(distribution)
    assert non_empty_lines(server.output()) == [
        f"webchannel: incompatible dependency: {distribution} {version} has no {missing}"
    ]
