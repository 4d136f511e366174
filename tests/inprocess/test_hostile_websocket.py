"""Hostile WebSocket handshakes and frames, checked with hypothesis.

A handshake is accepted only for a valid token whose ``cid`` is the decoded path id, and
refused (closed before accept, which Daphne answers with 403) otherwise, never with an
exception out of the application. An accepted socket that receives any data frame is closed
with 4003. Scopes are built by hand, as in test_hostile_http.py (``path`` decoded from
``raw_path``, or holding lone surrogates as only a hand-built scope can).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from channels.testing import ApplicationCommunicator
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.common import make_token
from tests.harness import timeout
from webchannel_project.asgi import application

from .helpers import sample
from .test_hostile_http import (
    ATTACKS,
    HYPOTHESIS,
    PREFIX,
    TOKEN_KINDS,
    authorization_values,
    channel_ids,
    follows_id_rules,
    header_value_bytes,
    next_output,
    oracle_accepts,
    path_channel_id,
    paths,
    surrogate_ids,
    token_chars,
    token_of_kind,
    tokens,
    valid_channel_ids,
    weighted,
)

pytestmark = pytest.mark.slow

DATA_FROM_CLIENT = 4003
BEARER_SUBPROTOCOL = "webchannel.bearer."


safe_paths = st.from_regex(r"[A-Za-z0-9_~.-]{1,40}", fullmatch=True).map(
    lambda channel_id: (PREFIX + "/" + channel_id, (PREFIX + "/" + channel_id).encode("ascii"), "wire")
)


@dataclass
class Handshake:
    path: str
    raw_path: bytes | None
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    subprotocols: list[str]

    def scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": self.path,
            "query_string": self.query_string,
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "subprotocols": self.subprotocols,
        }
        if self.raw_path is not None:
            scope["raw_path"] = self.raw_path
        return scope

    def presented_tokens(self) -> list[str]:
        """Every string a lenient server could take for the token (a superset of what it should)."""
        found = []
        for name, value in self.headers:
            if name == b"authorization":
                found += [word for word in re.split(r"[\s,]+", value.decode("latin-1")) if word]
        for encoding in ("latin-1", "utf-8"):
            query = self.query_string.decode(encoding, errors="replace")
            found += [value for key, value in parse_qsl(query, keep_blank_values=True) if key == "access_token"]
        found += [p.removeprefix(BEARER_SUBPROTOCOL) for p in self.subprotocols if p.startswith(BEARER_SUBPROTOCOL)]
        return found


def subscribed_id(path: str) -> str | None:
    """The channel id a subscribe path names; channels' URLRouter ignores extra leading slashes."""
    return path_channel_id("/" + path.lstrip("/"))


def quoted(token: str) -> str:
    return quote(token.encode("latin-1", errors="replace"), safe=".-_~")


@st.composite
def handshakes(draw: st.DrawFn) -> Handshake:
    path, raw_path, _ = draw(weighted((2, safe_paths), (3, paths())))
    channel_id = subscribed_id(path) or draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True))
    # Tokens for this id (good and bad), or good ones for a neighbouring id.
    token_for = weighted(
        (2, st.builds(make_token, st.just(channel_id))),
        (3, tokens(channel_id)),
        (1, st.sampled_from([channel_id + "x", "other"]).flatmap(tokens)),
    )
    parts: list[str] = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 0, 2]))):
        token = draw(token_for)
        name = draw(weighted((4, st.just("access_token")), (1, st.sampled_from(["Access_Token", "token", "x[]"]))))
        parts.append(f"{name}={quoted(token) if draw(st.booleans()) else token}")
    for _ in range(draw(st.integers(0, 2))):
        parts.append(
            draw(st.sampled_from(["", "=", "&", "access_token", "access_token=", "frames=text", "x=%FF", "%"]))
        )
    parts = draw(st.permutations(parts))
    query = "&".join(parts).encode("latin-1", errors="replace")
    if draw(st.sampled_from([False] * 9 + [True])):
        query = bytes(b for b in draw(st.binary(max_size=40)) if b < 0x80 and not chr(b).isspace())
    headers: list[tuple[bytes, bytes]] = [(b"host", b"testserver")]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        headers.append((b"authorization", draw(authorization_values(channel_id))))
    if draw(st.booleans()):
        headers.append((b"origin", draw(st.sampled_from([b"https://example.com", b"null"]) | header_value_bytes)))
    for _ in range(draw(st.integers(0, 2))):
        headers.append((draw(st.text(token_chars, min_size=1, max_size=20)).encode("ascii"), draw(header_value_bytes)))
    subprotocols = draw(
        st.lists(
            st.one_of(
                st.just("webchannel"),
                token_for.map(lambda token: BEARER_SUBPROTOCOL + token),
                st.text(token_chars, max_size=20),
                st.text(max_size=10),
            ),
            max_size=3,
        )
    )
    offered = bool(subprotocols) and draw(st.booleans())
    if offered:
        headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode("utf-8")))
    return Handshake(path, raw_path, query, draw(st.permutations(headers)), subprotocols)


frames = st.lists(
    st.one_of(
        st.text(max_size=50).map(lambda text: {"type": "websocket.receive", "text": text}),
        st.binary(max_size=50).map(lambda data: {"type": "websocket.receive", "bytes": data}),
        st.sampled_from(
            [{"type": "websocket.receive", "bytes": b"x" * 70_000}, {"type": "websocket.receive", "text": ""}]
        ),
    ),
    min_size=1,
    max_size=3,
)


@dataclass
class Outcome:
    accepted: bool
    subprotocol: str | None
    close_code: int | None
    after: list[dict[str, Any]]


async def drive(handshake: Handshake, client_frames: list[dict[str, Any]]) -> Outcome:
    """Connect; if accepted, send ``client_frames``; then disconnect and let the application finish.

    Any exception the application raises propagates (and fails the property).
    """
    communicator = ApplicationCommunicator(application, handshake.scope())
    try:
        await communicator.send_input({"type": "websocket.connect"})
        reply = await next_output(communicator)
        assert reply["type"] in ("websocket.accept", "websocket.close"), reply
        accepted = reply["type"] == "websocket.accept"
        close_code = None
        after: list[dict[str, Any]] = []
        if accepted:
            for frame in client_frames:
                await communicator.send_input(frame)
            closing = await next_output(communicator)
            assert closing["type"] == "websocket.close", f"data from the client did not close the socket: {closing}"
            close_code = closing.get("code", 1000)
        await communicator.send_input({"type": "websocket.disconnect", "code": 1006 if accepted else 1000})
        await communicator.wait(timeout(10))  # re-raises anything the application raised
        while not communicator.output_queue.empty():
            after.append(communicator.output_queue.get_nowait())
    finally:
        communicator.stop(exceptions=False)
    return Outcome(accepted, reply.get("subprotocol") if accepted else None, close_code, after)


def connected_gauge() -> float:
    return sample("webchannel_users_connected")


@HYPOTHESIS
@given(handshakes(), frames)
async def test_handshake_is_accepted_only_with_a_valid_token_for_the_path_id(
    handshake: Handshake, client_frames
) -> None:
    gauge_before = connected_gauge()
    outcome = await drive(handshake, client_frames)
    channel_id = subscribed_id(handshake.path)
    valid_id = channel_id is not None and follows_id_rules(channel_id)
    event(f"{'accepted' if outcome.accepted else 'refused'}{' (valid id)' if valid_id else ''}")
    if outcome.accepted:
        context = f"path={handshake.path!r} query={handshake.query_string[:200]!r} headers={handshake.headers!r}"
        assert channel_id is not None, f"accepted outside /webchannel/v1/channels/{{id}}: {context}"
        assert follows_id_rules(channel_id), f"accepted an invalid channel id: {context}"
        assert any(oracle_accepts(token, channel_id) for token in handshake.presented_tokens()), (
            f"accepted without a valid token for {channel_id!r}: {context}"
        )
        if outcome.subprotocol is not None:
            assert outcome.subprotocol in handshake.subprotocols, outcome.subprotocol
            assert not outcome.subprotocol.startswith(BEARER_SUBPROTOCOL), "echoed a token-bearing subprotocol"
        assert outcome.close_code == DATA_FROM_CLIENT, f"closed with {outcome.close_code} after a client frame"
    assert not [m for m in outcome.after if m["type"] == "websocket.send"], f"data sent after close: {outcome.after}"
    assert connected_gauge() == gauge_before, "webchannel_users_connected did not return to its value"


@HYPOTHESIS
@given(
    weighted((4, channel_ids), (1, surrogate_ids)),
    st.sampled_from(["query", "query-quoted", "authorization"]),
    st.data(),
)
async def test_valid_token_for_the_path_id_is_accepted_and_nothing_else(channel_id: str, placement: str, data) -> None:
    """One token, in the query or the Authorization header: accepted exactly when it is good for the id."""
    try:
        raw = (PREFIX + "/" + quote(channel_id, safe="")).encode("ascii")
        path = PREFIX + "/" + channel_id
    except UnicodeEncodeError:  # lone surrogates: only a hand-built scope carries them
        raw, path = None, PREFIX + "/" + channel_id
    token = data.draw(weighted((1, st.builds(make_token, st.just(channel_id))), (2, tokens(channel_id))), label="token")
    query, headers = b"", [(b"host", b"testserver")]
    if placement == "authorization":
        headers.append((b"authorization", f"Bearer {token}".encode("latin-1", errors="replace")))
    else:
        query = f"access_token={quoted(token) if placement == 'query-quoted' else token}".encode("latin-1", "replace")
    handshake = Handshake(path, raw, query, headers, [])
    frame = data.draw(frames, label="frames")
    outcome = await drive(handshake, frame)
    presented = token.strip(" \t") if placement == "authorization" else token  # OWS is not in a header value
    expected = follows_id_rules(channel_id) and oracle_accepts(presented, channel_id)
    if placement == "query" and not re.fullmatch(r"[A-Za-z0-9._~-]*", token):
        # An unquoted token holding &, +, % or = reads as something else in a query string:
        # only the safety half holds (accepted => some reading of it is a good token).
        if outcome.accepted:
            assert any(oracle_accepts(t, channel_id) for t in handshake.presented_tokens())
    else:
        assert outcome.accepted == expected, f"{channel_id=} {token[:200]=} {placement=}: accepted={outcome.accepted}"
    event(f"{placement}: {'accepted' if outcome.accepted else 'refused'}")
    if outcome.accepted:
        assert outcome.close_code == DATA_FROM_CLIENT


@pytest.mark.parametrize("kind", TOKEN_KINDS)
@settings(HYPOTHESIS, max_examples=25)
@given(data=st.data())
async def test_each_kind_of_token_opens_a_subscription_only_when_good(kind: str, data) -> None:
    """Every JWT attack (alg none, HS512, RS/HS confusion, tampering, wrong secret, expired,
    not yet valid, other channel, 100 KB) is refused at the handshake; a good token subscribes."""
    channel_id = data.draw(valid_channel_ids, label="channel_id")
    token = data.draw(token_of_kind(kind, channel_id), label="token")
    placement = data.draw(st.sampled_from(["query", "authorization"]), label="placement")
    raw = (PREFIX + "/" + quote(channel_id, safe="")).encode("ascii")
    query, headers = b"", [(b"host", b"testserver")]
    if placement == "query":
        query = f"access_token={quoted(token)}".encode("ascii")
        presented = token
    else:
        headers.append((b"authorization", f"Bearer {token}".encode("latin-1", "replace")))
        presented = token.strip(" \t")  # whitespace around a header value is not in it
    outcome = await drive(
        Handshake(PREFIX + "/" + channel_id, raw, query, headers, []), [{"type": "websocket.receive", "text": "x"}]
    )
    good = oracle_accepts(presented, channel_id)
    if kind == "valid":
        assert good
    elif kind in (*ATTACKS, "other-channel"):
        assert not good, f"the generator made a good {kind} token"
    assert outcome.accepted == good, f"{kind} {token[:200]!r} via {placement}: accepted={outcome.accepted}"
    if outcome.accepted:
        assert outcome.close_code == DATA_FROM_CLIENT
