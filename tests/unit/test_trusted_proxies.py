"""Who the access log names as the client: the peer, or what trusted proxies forwarded; refusal lines."""

from __future__ import annotations

import logging

import pytest

from channels_api.config import load_config
from channels_api.exceptions import ConfigError
from channels_api.logs import (
    AccessNote,
    access_note,
    client_address,
    forwarded_client,
    log_action,
    parse_trusted_proxy,
    trusted_networks,
)

LOCAL = trusted_networks(("127.0.0.1", "::1"))
PRIVATE = trusted_networks(("10.0.0.0/8", "fd00::/8"))


def test_without_trusted_proxies_the_header_is_never_read():
    assert client_address("127.0.0.1", ["203.0.113.7"], ()) == "127.0.0.1"
    assert forwarded_client("127.0.0.1", ["203.0.113.7"], ()) is None


def test_a_spoofed_header_from_an_untrusted_peer_is_ignored():
    assert client_address("198.51.100.9", ["203.0.113.7"], LOCAL) == "198.51.100.9"
    assert client_address("198.51.100.9", ["127.0.0.1, 10.1.2.3"], PRIVATE) == "198.51.100.9"
    assert forwarded_client("198.51.100.9", ["203.0.113.7"], LOCAL) is None


def test_a_trusted_peer_forwards_the_address_it_was_connected_from():
    assert client_address("127.0.0.1", ["203.0.113.7"], LOCAL) == "203.0.113.7"
    assert forwarded_client("127.0.0.1", ["203.0.113.7"], LOCAL) == "203.0.113.7"


def test_the_right_most_untrusted_address_wins_over_what_the_client_made_up():
    # The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the address it saw.
    assert client_address("127.0.0.1", ["1.1.1.1, 203.0.113.7"], LOCAL) == "203.0.113.7"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right():
    header = ["1.1.1.1, 203.0.113.7, 10.0.0.2, 10.0.0.3"]
    assert client_address("10.0.0.4", header, PRIVATE) == "203.0.113.7"


def test_several_header_lines_are_one_list_in_order():
    assert client_address("10.0.0.4", ["1.1.1.1, 203.0.113.7", "10.0.0.3"], PRIVATE) == "203.0.113.7"


def test_when_every_hop_is_trusted_the_left_most_is_the_client():
    assert client_address("10.0.0.4", ["10.0.0.1, 10.0.0.2"], PRIVATE) == "10.0.0.1"


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("::1", ["2001:db8::7"], "2001:db8::7"),
        ("::1", ["[2001:db8::7]:4711"], "2001:db8::7"),
        ("fd00::2", ["2001:db8::7, fd00::1"], "2001:db8::7"),
        ("::1", ["2001:DB8:0:0:0:0:0:7"], "2001:db8::7"),  # shown in its canonical form
        ("127.0.0.1", ["203.0.113.7:4711"], "203.0.113.7"),
        # A dual-stack socket reports an IPv4 peer as IPv4-mapped IPv6.
        ("::ffff:127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("::1", ["::ffff:127.0.0.1, 2001:db8::7"], "2001:db8::7"),
    ],
)
def test_ipv6_and_ports(peer, header, expected):
    assert client_address(peer, header, LOCAL + PRIVATE) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ([], "127.0.0.1"),
        ([""], "127.0.0.1"),
        ([" , ,"], "127.0.0.1"),
        (["unknown"], "127.0.0.1"),
        (["not an address"], "127.0.0.1"),
        (["203.0.113.7, garbage"], "127.0.0.1"),  # nothing left of garbage is believed
        (["203.0.113.7, garbage, 127.0.0.1"], "127.0.0.1"),
        (["garbage, 203.0.113.7"], "203.0.113.7"),
        (["203.0.113.7:port"], "127.0.0.1"),
        (["[2001:db8::7"], "127.0.0.1"),
        (["[2001:db8::7]x"], "127.0.0.1"),
        (["300.1.2.3"], "127.0.0.1"),
        (["203.0.113.7\x00"], "127.0.0.1"),
        (["203.0.113.7,, 127.0.0.1"], "203.0.113.7"),  # empty entries carry no claim
    ],
)
def test_garbage_never_becomes_the_client(header, expected):
    assert client_address("127.0.0.1", header, LOCAL) == expected


def test_a_garbage_peer_is_never_trusted():
    assert client_address("not-an-ip", ["203.0.113.7"], LOCAL) == "not-an-ip"


@pytest.mark.parametrize("entry", ["127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8", " 192.168.0.0/16 "])
def test_trusted_proxy_entries_are_addresses_or_networks(entry):
    parse_trusted_proxy(entry)


@pytest.mark.parametrize("entry", ["", "localhost", "10.0.0.1/8", "10.0.0.0/33", "1.2.3", "nginx:80"])
def test_bad_trusted_proxy_entries_are_refused_by_name(entry):
    with pytest.raises(ValueError, match="expected IP addresses or networks") as info:
        parse_trusted_proxy(entry)
    assert repr(entry) in str(info.value)


def test_trusted_proxies_default_to_none():
    assert load_config(None, {}).server.trusted_proxies == ()


def test_trusted_proxies_from_the_environment_are_comma_separated():
    config = load_config(None, {"WC_SERVER__TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"})
    assert config.server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")


def test_trusted_proxies_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\ntrusted_proxies = ["127.0.0.1", "fd00::/8"]\n')
    assert load_config(str(path), {}).server.trusted_proxies == ("127.0.0.1", "fd00::/8")


def test_a_bad_trusted_proxy_is_a_one_line_config_error_naming_the_variable_and_entry():
    with pytest.raises(ConfigError) as info:
        load_config(None, {"WC_SERVER__TRUSTED_PROXIES": "127.0.0.1,proxy.example"})
    message = str(info.value)
    assert "\n" not in message
    assert "WC_SERVER__TRUSTED_PROXIES" in message
    assert "'proxy.example'" in message


# --- the access-log line ---------------------------------------------------------------------------


def ws_line(caplog, action: str, note: AccessNote | None = None) -> list[str]:
    caplog.set_level(logging.INFO, logger="webchannel.access")
    caplog.clear()
    details = {"path": "/webchannel/v1/channels/x", "client": "127.0.0.1:5555"}
    if note is None:
        log_action("websocket", action, details)
    else:
        with access_note(note):
            log_action("websocket", action, details)
    return [record.getMessage() for record in caplog.records]


def test_a_refused_handshake_is_one_line_with_its_reason(caplog):
    assert ws_line(caplog, "rejected", AccessNote(refusal="expired_token")) == [
        '127.0.0.1:5555 "WS /webchannel/v1/channels/x" refused expired_token'
    ]
    # Its connection's end says nothing more.
    assert ws_line(caplog, "disconnected", AccessNote(refusal="expired_token", silent=True)) == []


def test_a_subscribe_refused_after_accept_ends_with_its_reason(caplog):
    assert ws_line(caplog, "disconnected", AccessNote(refusal="layer_unavailable")) == [
        '127.0.0.1:5555 "WS /webchannel/v1/channels/x" refused layer_unavailable'
    ]


def test_without_a_note_daphnes_action_stands(caplog):
    assert ws_line(caplog, "rejected") == ['127.0.0.1:5555 "WS /webchannel/v1/channels/x" rejected']


def test_a_forwarded_client_replaces_the_peer_in_websocket_and_http_lines(caplog):
    assert ws_line(caplog, "connected", AccessNote(client="203.0.113.7")) == [
        '203.0.113.7 "WS /webchannel/v1/channels/x" connected'
    ]
    caplog.clear()
    details = {"path": "/healthz", "status": 200, "method": "GET", "client": "127.0.0.1:5555", "time_taken": 0.001}
    with access_note(AccessNote(client="203.0.113.7")):
        log_action("http", "complete", {**details, "size": 2})
    assert caplog.records[0].getMessage().startswith('203.0.113.7 "GET /healthz" 200')


def test_the_note_ends_with_its_block(caplog):
    with access_note(AccessNote(client="203.0.113.7", refusal="invalid_token")):
        pass
    assert ws_line(caplog, "connected") == ['127.0.0.1:5555 "WS /webchannel/v1/channels/x" connected']
