"""Configuration through the README's command, ``python manage.py serve -c FILE``.

Sources, later wins: defaults < TOML file < ``WC_*`` environment. Bad configuration: one
clear line naming the file or key and the problem, exit status 2, no traceback.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from tests.e2e.helpers import CHANNELS, create_channel, non_empty_lines, publish, recv_binary, subscribe, wait_exit
from tests.harness import (
    API_KEY,
    SECRET_KEY,
    base_config,
    free_port,
    run_serve,
    serving,
    timeout,
    toml,
    wait_for,
)


def run_to_exit(tmp_path: Path, config: Any, env: dict[str, str] | None = None, args: list[str] | None = None):
    server = run_serve(tmp_path, config, env, args)
    try:
        return wait_exit(server, 30), server.output()
    finally:
        server.stop()


def assert_one_line_error(returncode: int, output: str, *expected: str) -> str:
    assert returncode == 2, f"exit status {returncode}, expected 2:\n{output}"
    assert "Traceback" not in output, output
    lines = non_empty_lines(output)
    assert len(lines) == 1, f"expected exactly one line, got {len(lines)}:\n{output}"
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


# --- bad configuration: status 2, one line, no traceback ----------------------------------------


def test_missing_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "missing.toml"
    returncode, output = run_to_exit(tmp_path, None, args=["-c", str(missing)])
    line = assert_one_line_error(returncode, output, str(missing))
    assert "No such file" in line or "cannot read" in line, line


def test_unreadable_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "config-dir.toml"
    directory.mkdir()
    returncode, output = run_to_exit(tmp_path, None, args=["-c", str(directory)])
    line = assert_one_line_error(returncode, output, str(directory))
    assert "directory" in line.lower() or "cannot read" in line, line


BAD_FILES = [
    pytest.param('[server\nlisten_address = "127.0.0.1:0"\n', ["invalid TOML"], id="invalid-toml"),
    pytest.param(toml(base_config(server={"nope": 1})), ["server.nope", "unknown"], id="unknown-key"),
    pytest.param(toml({**base_config(), "nope": {"x": 1}}), ["nope", "unknown section"], id="unknown-section"),
    pytest.param(toml(base_config(channel={"ttl": "abc"})), ["channel.ttl", "expected an integer"], id="wrong-type"),
    pytest.param(
        toml(base_config(channel={"api_keys": "not a list but spaces"})), ["channel.api_keys"], id="bad-api-keys"
    ),
    pytest.param(
        toml(base_config(server={"listen_address": "nohost"})), ["server.listen_address", "HOST:PORT"], id="no-port"
    ),
    pytest.param(
        toml(base_config(server={"listen_address": "example.com:8080"})),
        ["server.listen_address", "expected"],
        id="hostname-address",
    ),
    pytest.param(
        toml(base_config(server={"listen_address": "127.0.0.1:70000"})),
        ["server.listen_address", "65535"],
        id="port-out-of-range",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_config_file_exits_2_with_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    returncode, output = run_to_exit(tmp_path, text)
    assert_one_line_error(returncode, output, str(tmp_path / "server.toml"), *expected)


BAD_ENV = [
    pytest.param({"WC_CHANNEL__TTL": "abc"}, ["WC_CHANNEL__TTL", "expected an integer"], id="ttl-abc"),
    pytest.param({"WC_SERVER__NOPE": "1"}, ["WC_SERVER__NOPE", "unknown"], id="unknown-variable"),
    pytest.param({"WC_LOG": "loud"}, ["WC_LOG", "loud"], id="bad-log-level"),
    pytest.param({"WC_LOG": "channels_api=shout"}, ["WC_LOG", "shout"], id="bad-logger-level"),
    pytest.param({"WC_SERVER__CORS_ALLOW_ANY_ORIGIN": "maybe"}, ["WC_SERVER__CORS_ALLOW_ANY_ORIGIN"], id="bad-bool"),
    pytest.param({"WC_SERVER__LISTEN_ADDRESS": "localhost"}, ["WC_SERVER__LISTEN_ADDRESS"], id="bad-address"),
]


@pytest.mark.parametrize(("env", "expected"), BAD_ENV)
def test_bad_environment_variable_exits_2_with_one_line_naming_it(
    tmp_path: Path, env: dict[str, str], expected: list[str]
) -> None:
    returncode, output = run_to_exit(tmp_path, base_config(), env)
    assert_one_line_error(returncode, output, *expected)


def test_secret_values_are_not_echoed_in_configuration_errors(tmp_path: Path) -> None:
    secret = "bad key with spaces 7f3a9c"
    returncode, output = run_to_exit(tmp_path, base_config(), {"WC_CHANNEL__API_KEYS": secret})
    assert_one_line_error(returncode, output, "WC_CHANNEL__API_KEYS")
    assert "7f3a9c" not in output


# --- sources and precedence ------------------------------------------------------------------


def listening_config(port: int, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    config = base_config(**sections)
    config["server"]["listen_address"] = f"127.0.0.1:{port}"
    return config


def test_wc_config_file_works_like_dash_c(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "from-env.toml"
    path.write_text(toml(listening_config(port, channel={"api_keys": ["key-from-file"]})))
    server = run_serve(tmp_path, None, {"WC_CONFIG_FILE": str(path)})
    try:
        server.wait_listening()
        assert server.port == port
        response = httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": "key-from-file"})
        assert response.status_code == 200
        response = httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": API_KEY})
        assert response.status_code == 401
    finally:
        server.stop()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file_port, env_port = free_port(), free_port()
    env = {"WC_SERVER__LISTEN_ADDRESS": f"127.0.0.1:{env_port}", "WC_CHANNEL__TTL": "120"}
    with serving(tmp_path, listening_config(file_port, channel={"ttl": 3600}), env) as server:
        assert (server.host, server.port) == ("127.0.0.1", env_port)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{file_port}/healthz")
        response = httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": API_KEY})
        assert response.status_code == 200
        token = response.json()["token"]
        claims = jwt.decode(token, SECRET_KEY, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] == 120


def test_api_keys_from_the_environment_are_a_comma_separated_list(tmp_path: Path) -> None:
    with serving(tmp_path, base_config(), {"WC_CHANNEL__API_KEYS": "foo-key-1,bar-key-2"}) as server:
        for key in ("foo-key-1", "bar-key-2"):
            response = httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": key})
            assert response.status_code == 200, (key, response.text)
        for key in (API_KEY, "foo-key-1,bar-key-2"):
            response = httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": key})
            assert response.status_code == 401, key


def test_unset_secret_key_starts_with_a_warning(tmp_path: Path) -> None:
    config = base_config()
    del config["channel"]["secret_key"]
    with serving(tmp_path, config) as server:
        channel_id, token = create_channel(server.url)
        warnings = [line for line in server.output().splitlines() if "channel.secret_key" in line]
        assert warnings, server.output()
        assert any("WARNING" in line for line in warnings), warnings
        response = httpx.post(
            f"{server.url}{CHANNELS}/{channel_id}", content=b"x", headers={"authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204


def test_unset_api_keys_prints_a_generated_key_once_and_it_works(tmp_path: Path) -> None:
    config = base_config()
    del config["channel"]["api_keys"]
    with serving(tmp_path, config) as server:
        match = re.search(r"WARNING .*generated API key for this process: (\S+)", server.output())
        assert match, server.output()
        key = match.group(1)
        response = httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": key})
        assert response.status_code == 200
        response = httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": API_KEY})
        assert response.status_code == 401
        # Printed once: not again on later requests (the access log redacts x-api-key anyway).
        wait_for(lambda: server.output().count('"POST /webchannel/v1/channels" 401') == 1, 5, "the access line")
        assert server.output().count(key) == 1, server.output()


async def test_wc_log_debug_shows_debug_lines(tmp_path: Path) -> None:
    with serving(tmp_path, base_config(), {"WC_LOG": "debug"}) as server:
        channel_id, _ = create_channel(server.url)
        with pytest.raises(websockets.InvalidStatus):
            async with subscribe(server.url, channel_id, "not-a-token"):
                pass
        wait_for(
            lambda: re.search(r" DEBUG \[\d+\] channels_api\S*: ", server.output()), 5, "a debug line from channels_api"
        )


async def test_wc_log_info_hides_debug_lines(tmp_path: Path) -> None:
    with serving(tmp_path, base_config(), {"WC_LOG": "info"}) as server:
        channel_id, _ = create_channel(server.url)
        with pytest.raises(websockets.InvalidStatus):
            async with subscribe(server.url, channel_id, "not-a-token"):
                pass
        # The refused handshake's access line comes after the consumer's debug line would.
        wait_for(lambda: '"WS /webchannel/v1/channels/' in server.output(), 5, "the access line of the refusal")
        assert " DEBUG " not in server.output(), server.output()


def test_wc_log_warn_hides_info_lines(tmp_path: Path) -> None:
    port = free_port()
    server = run_serve(tmp_path, listening_config(port), {"WC_LOG": "warn"})
    try:

        def healthy() -> bool:
            assert server.alive(), server.output()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 20, "/healthz to answer")
        response = httpx.post(f"http://127.0.0.1:{port}{CHANNELS}", headers={"x-api-key": API_KEY})
        assert response.status_code == 200
        output = server.output()
        assert "Listening" not in output, output
        assert " INFO " not in output, output
    finally:
        server.stop()


def test_wc_log_per_logger_levels(tmp_path: Path) -> None:
    """``WC_LOG=warn,webchannel.access=info``: the access log stays on, other info lines go."""
    port = free_port()
    server = run_serve(tmp_path, listening_config(port), {"WC_LOG": "warn,webchannel.access=info"})
    try:

        def access_logged() -> bool:
            assert server.alive(), server.output()
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
            except httpx.TransportError:
                return False
            return '"GET /healthz" 200' in server.output()

        wait_for(access_logged, 20, "the access line of /healthz")
        assert "Listening" not in server.output(), server.output()
    finally:
        server.stop()


def ipv6_loopback_port() -> int:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
            return int(sock.getsockname()[1])
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine: {exc}")


async def test_listens_on_ipv6_loopback(tmp_path: Path) -> None:
    port = ipv6_loopback_port()
    config = base_config()
    config["server"]["listen_address"] = f"[::1]:{port}"
    server = run_serve(tmp_path, config)
    try:
        server.wait_listening()
        assert server.port == port
        base = f"http://[::1]:{port}"
        assert httpx.get(f"{base}/healthz").text == "OK"
        channel_id, token = create_channel(base)
        async with httpx.AsyncClient(timeout=timeout(10)) as client, subscribe(base, channel_id, token) as ws:
            response = await publish(client, base, channel_id, b"over IPv6", token=token)
            assert response.status_code == 204
            assert await recv_binary(ws) == b"over IPv6"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        server.stop()


def test_port_in_use_exits_nonzero_with_a_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        returncode, output = run_to_exit(tmp_path, listening_config(port))
    assert returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if str(port) in line and "in use" in line]
    assert lines, output
