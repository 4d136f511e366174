"""TLS and credentials toward Redis: ``rediss://`` URLs with ``redis.ssl_ca_certs``, a password and
an ACL user in the URL.

Against a TLS-only ``redis-server`` (no plain port; certificates made by ``openssl`` for this
test) and one with ``requirepass`` and an ACL user allowed no more than webchannel needs. A wrong
password is one clear line naming the Redis URL with its password redacted, in ``/readyz``'s
problem detail and in the log; no password ever appears in a log line or a response.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.common import API_KEY, assert_problem
from tests.e2e.helpers import (
    closed_with,
    create_channel,
    http_client,
    non_empty_lines,
    publish,
    recv_binary,
    subscribe,
    wait_exit,
)
from tests.harness import ServerProcess, base_config, run_serve, serving
from tests.redis_servers import ConfiguredRedis, TlsFiles, make_tls_files, redis_servers

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "admin-Pw-7d1c0e"
USER = "webchannel"
USER_PASSWORD = "user-Pw-93b1f4"
WRONG_PASSWORD = "wrong-Pw-5e2a77"
PASSWORDS = (ADMIN_PASSWORD, USER_PASSWORD, WRONG_PASSWORD)

# What webchannel needs from Redis, and no more (README, "Several processes with Redis"): its own
# channels only (the default prefix), publish, subscribe, unsubscribe and ping (health checks).
LEAST_PRIVILEGE = ["on", f">{USER_PASSWORD}", "resetchannels", "&webchannel__*", "-@all"] + [
    f"+{command}" for command in ("publish", "subscribe", "unsubscribe", "ping")
]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_redis(tmp_path: Path, tls_files: TlsFiles) -> Iterator[ConfiguredRedis]:
    with redis_servers(tmp_path, tls=tls_files) as (server,):
        yield server


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[ConfiguredRedis]:
    with redis_servers(tmp_path, password=ADMIN_PASSWORD, acl={USER: LEAST_PRIVILEGE}) as (server,):
        yield server


async def round_trip(server: ServerProcess, channel_id: str = "secure-channel") -> None:
    """Ready, and a message published through the server reaches its subscriber."""
    _, token = create_channel(server.url, channel_id)
    async with http_client() as client, subscribe(server.url, channel_id, token) as ws:
        response = await client.get(f"{server.url}/readyz")
        assert response.status_code == 200, response.text
        response = await publish(client, server.url, channel_id, b"over the wire", token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"over the wire"


def assert_no_password(*texts: str) -> None:
    for text in texts:
        for password in PASSWORDS:
            assert password not in text, f"a password appears in:\n{text}"


# --- TLS ----------------------------------------------------------------------------------------


async def test_a_tls_only_redis_with_the_ca_file_carries_messages(
    tmp_path: Path, tls_redis: ConfiguredRedis, tls_files: TlsFiles
) -> None:
    assert tls_redis.url.startswith("rediss://")
    config = base_config(redis={"url": tls_redis.url, "ssl_ca_certs": str(tls_files.ca_cert)})
    with serving(tmp_path, config) as server:
        await round_trip(server)
    assert tls_redis.publish_calls() >= 2  # the readiness probe's and the message's, over TLS


async def test_without_the_ca_file_the_servers_certificate_is_refused(
    tmp_path: Path, tls_redis: ConfiguredRedis
) -> None:
    # The test CA is in no system store: the certificate must not be accepted unverified.
    with serving(tmp_path, base_config(redis={"url": tls_redis.url})) as server:
        async with http_client() as client:
            response = await client.get(f"{server.url}/readyz")
        problem = assert_problem(response, 503)
        assert tls_redis.url in problem["detail"], problem
        assert "certificate verify failed" in problem["detail"], problem


def test_a_missing_ca_file_stops_serve_with_one_line(tmp_path: Path, tls_redis: ConfiguredRedis) -> None:
    missing = tmp_path / "no-such-ca.pem"
    server = run_serve(tmp_path, base_config(redis={"url": tls_redis.url, "ssl_ca_certs": str(missing)}))
    try:
        returncode = wait_exit(server, 30)
    finally:
        server.stop()
    output = server.output()
    assert returncode == 2, output
    (line,) = non_empty_lines(output)
    assert "redis.ssl_ca_certs" in line, line
    assert str(missing) in line, line


# --- credentials --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "password"), [(None, ADMIN_PASSWORD), (USER, USER_PASSWORD)], ids=["requirepass", "acl-user"]
)
async def test_a_password_or_an_acl_user_in_the_url_carries_messages(
    tmp_path: Path, locked_redis: ConfiguredRedis, user: str | None, password: str
) -> None:
    with serving(tmp_path, base_config(redis={"url": locked_redis.url_for(user, password)})) as server:
        await round_trip(server)
        async with http_client() as client:
            assert (await client.get(f"{server.url}/metrics")).status_code == 200
    assert_no_password(server.output())


async def test_a_wrong_password_is_one_line_naming_the_url_with_the_password_redacted(
    tmp_path: Path, locked_redis: ConfiguredRedis
) -> None:
    url = locked_redis.url_for(USER, WRONG_PASSWORD)
    shown = f"redis://{USER}:***@127.0.0.1:{locked_redis.port}/0"
    channel_id = "locked-out"
    with serving(tmp_path, base_config(redis={"url": url})) as server:
        _, token = create_channel(server.url, channel_id)
        bodies = []
        async with http_client() as client:
            for _ in range(3):
                readyz = await client.get(f"{server.url}/readyz")
                problem = assert_problem(readyz, 503)
                assert problem["detail"].startswith(f"Redis {shown} refused the credentials"), problem
                bodies.append(response_text(readyz))
                published = await publish(client, server.url, channel_id, b"x", api_key=API_KEY)
                assert_problem(published, 503)
                bodies.append(response_text(published))
        async with subscribe(server.url, channel_id, token) as ws:
            assert await closed_with(ws) == 4013
    output = server.output()
    refused = [line for line in output.splitlines() if "refused the credentials" in line]
    assert len(refused) == 1, output
    assert shown in refused[0], refused
    assert "ERROR" in refused[0], refused
    assert "Traceback" not in output, output
    assert_no_password(output, *bodies)


async def test_a_user_without_a_needed_permission_is_named_too(tmp_path: Path, locked_redis: ConfiguredRedis) -> None:
    # The ACL user may use only channels starting "webchannel__": another prefix is denied.
    config = base_config(redis={"url": locked_redis.url_for(USER, USER_PASSWORD), "prefix": "other"})
    with serving(tmp_path, config) as server:
        async with http_client() as client:
            problem = assert_problem(await client.get(f"{server.url}/readyz"), 503)
    assert problem["detail"].startswith(f"Redis redis://{USER}:***@127.0.0.1:{locked_redis.port}/0 denied"), problem
    assert_no_password(server.output(), problem["detail"])


def response_text(response: httpx.Response) -> str:
    """Status line, headers and body, as a client (or a log collector) would see them."""
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    return f"{response.status_code}\n{headers}\n\n{response.text}"
