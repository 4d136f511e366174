"""``redis.sentinels`` with ``redis.master_name``: webchannel finds its Redis through a real
Redis Sentinel and carries messages through the master it names.

Only the configuration and its mapping are tested here (serve starts, is ready, a message
round-trips, the traffic is on the master); a failover, with a replica promoted, is tested
separately.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import create_channel, http_client, publish, recv_binary, subscribe
from tests.harness import base_config, serving
from tests.redis_servers import ConfiguredRedis, RedisSentinel, redis_servers

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[RedisSentinel]:
    with redis_servers(tmp_path) as (master,):
        sentinel = RedisSentinel(tmp_path, master)
        sentinel.start()
        try:
            yield sentinel
        finally:
            sentinel.stop()


async def test_serve_finds_the_master_through_the_sentinel_and_round_trips(
    tmp_path: Path, sentinel: RedisSentinel
) -> None:
    master = sentinel.master
    assert isinstance(master, ConfiguredRedis)
    env = {"WC_REDIS__SENTINELS": sentinel.address, "WC_REDIS__MASTER_NAME": sentinel.master_name}
    before = master.publish_calls()
    with serving(tmp_path, base_config(), env=env) as server:
        channel_id, token = create_channel(server.url)
        async with http_client() as client, subscribe(server.url, channel_id, token) as ws:
            response = await client.get(f"{server.url}/readyz")
            assert response.status_code == 200, response.text
            response = await publish(client, server.url, channel_id, b"via sentinel", token=token)
            assert response.status_code == 204, response.text
            assert await recv_binary(ws) == b"via sentinel"
        output = server.output()
    assert f"master '{sentinel.master_name}' via sentinels {sentinel.address}" in output, output
    assert master.publish_calls() - before >= 2  # the readiness probe's and the message's
