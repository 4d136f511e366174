"""Secrets never reach the logs, even at ``WC_LOG=debug`` with the access log on.

A full session exercises every place a secret travels: the API key (create, publish), tokens
(query ``access_token``, ``Authorization: Bearer`` on subscribe and publish), failed attempts
with wrong credentials, and ``/metrics`` behind HTTP Basic auth. Afterwards none of the
secrets may appear anywhere in the server's output, while the (redacted) access log is there.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.common import make_token
from tests.e2e.helpers import CHANNELS, publish, recv_binary, subscribe, ws_url
from tests.harness import serving, timeout


def random_secret(name: str) -> str:
    return f"{name}-{secrets.token_urlsafe(18)}"


async def test_no_secret_appears_in_the_debug_log_of_a_full_session(tmp_path: Path) -> None:
    secret_key = random_secret("channel-secret")
    api_key = random_secret("api-key")
    metrics_password = random_secret("metrics-password")
    wrong_api_key = random_secret("wrong-api-key")
    wrong_password = random_secret("wrong-metrics-password")
    config: dict[str, dict[str, Any]] = {
        "server": {"listen_address": "127.0.0.1:0"},
        "channel": {"secret_key": secret_key, "api_keys": [api_key]},
        "metrics": {"auth_enabled": True, "auth_username": "prometheus", "auth_password": metrics_password},
    }
    leaked: list[str] = [secret_key, api_key, metrics_password, wrong_api_key, wrong_password]

    with serving(tmp_path, config, {"WC_LOG": "debug"}) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=timeout(10)) as client:
            response = await client.post(CHANNELS, headers={"x-api-key": api_key})
            assert response.status_code == 200
            channel_id, token = response.json()["channelId"], response.json()["token"]
            response = await client.post(CHANNELS, headers={"x-api-key": api_key}, json={"channelId": "other"})
            assert response.status_code == 200
            other_token = response.json()["token"]
            forged_token = make_token(channel_id, secret=random_secret("forger"))
            garbage_token = random_secret("not-a-jwt")
            leaked += [token, other_token, forged_token, garbage_token]

            async with (
                subscribe(server.url, channel_id, token) as by_query,
                subscribe(server.url, channel_id, token, header=True) as by_header,
            ):
                response = await publish(client, server.url, channel_id, b"with bearer", token=token)
                assert response.status_code == 204
                response = await publish(client, server.url, channel_id, b"with api key", api_key=api_key)
                assert response.status_code == 204
                for ws in (by_query, by_header):
                    assert await recv_binary(ws) == b"with bearer"
                    assert await recv_binary(ws) == b"with api key"

            # Failed attempts carry secrets too (wrong ones, and right ones for the wrong place).
            response = await client.post(CHANNELS, headers={"x-api-key": wrong_api_key})
            assert response.status_code == 401
            for bad in (forged_token, garbage_token):
                response = await publish(client, server.url, channel_id, b"x", token=bad)
                assert response.status_code == 401
            response = await publish(client, server.url, channel_id, b"x", token=other_token)
            assert response.status_code == 403
            response = await publish(client, server.url, channel_id, b"x", api_key=wrong_api_key)
            assert response.status_code == 401
            for bad in (forged_token, garbage_token, other_token):
                with pytest.raises(websockets.InvalidStatus):
                    async with subscribe(server.url, channel_id, bad):
                        pass
                with pytest.raises(websockets.InvalidStatus):
                    async with subscribe(server.url, channel_id, bad, header=True):
                        pass
            # access_token among other query parameters, and a repeated one.
            url = ws_url(server.url, channel_id) + f"?x=1&access_token={garbage_token}&access_token={forged_token}"
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(url, open_timeout=timeout(10)):
                    pass

            # Tokens in the query of plain HTTP requests (browsers put them there, e.g. for a
            # GET of the channel URL without upgrade): the access log shows the URI, redacted.
            response = await client.get(f"{CHANNELS}/{channel_id}", params={"access_token": token})
            assert response.status_code < 500
            response = await client.post(
                f"{CHANNELS}/{channel_id}?x=1&access_token={garbage_token}&access_token={forged_token}", content=b"x"
            )
            assert response.status_code == 401

            response = await client.get("/metrics", auth=("prometheus", metrics_password))
            assert response.status_code == 200
            assert "webchannel_messages_published_total" in response.text
            response = await client.get("/metrics", auth=("prometheus", wrong_password))
            assert response.status_code == 401
            response = await client.get("/metrics")
            assert response.status_code == 401
            for password in (metrics_password, wrong_password):
                leaked.append(base64.b64encode(f"prometheus:{password}".encode()).decode())

    output = server.output()  # the server has stopped: everything it wrote is in the file
    # The JWT signatures are the secret part of a token; look for them on their own too.
    leaked += [token.rsplit(".", 1)[1] for token in (token, other_token, forged_token)]
    found = [secret for secret in leaked if secret in output]
    assert not found, f"secrets in the server output: {found}\n{output}"

    assert " DEBUG " in output, "WC_LOG=debug produced no debug line"
    access = [line for line in output.splitlines() if "webchannel.access" in line]
    assert any(f'"POST {CHANNELS}" 200' in line for line in access), output
    assert any(f'"POST {CHANNELS}/{channel_id}" 204' in line for line in access), output
    assert any(f'"POST {CHANNELS}" 401' in line for line in access), output
    assert any('"GET /metrics" 401' in line for line in access), output
    redacted = [line for line in access if "access_token=[redacted]" in line]
    assert len(redacted) >= 2, output
    assert all(f"{CHANNELS}/{channel_id}?" in line for line in redacted), redacted
    assert any("x=1&access_token=[redacted]&access_token=[redacted]" in line for line in redacted), redacted
