"""channels_api.events: every close code has one documented reason phrase."""

from __future__ import annotations

from pathlib import Path

from channels_api.events import CloseCode, close_reason

REASONS = {
    4000: "channel closed",
    4003: "data from client",
    4005: "token expired",
    4008: "too slow",
    4011: "internal error",
    4013: "try again later",
    1012: "server restarting",
}
"""What a client reads in each close frame the server starts."""


def test_every_close_the_server_starts_has_its_reason() -> None:
    assert {int(code): code.reason for code in CloseCode if code != CloseCode.NORMAL} == REASONS


def test_each_reason_is_short_ascii_and_in_the_readmes_close_code_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "close-codes.md").read_text()
    for code, reason in REASONS.items():
        assert reason.isascii()
        assert len(reason.encode()) <= 123  # what a close frame holds
        assert f"| {code} | `{reason}` |" in readme, f"the README's close-code table lacks {code} {reason!r}"


def test_codes_that_are_not_webchannels_have_no_reason() -> None:
    assert close_reason(4999) is None
    assert close_reason(1000) is None
    assert close_reason(4013) == "try again later"
