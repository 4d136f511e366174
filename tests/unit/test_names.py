"""channels_api.names: channel-id rules and their mapping to channel-layer group names."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote

import pytest
from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from hypothesis import given, settings
from hypothesis import strategies as st

from channels_api.names import (
    CACHED_IDS,
    MAX_CHANNEL_ID_LENGTH,
    InvalidChannelId,
    channel_id_from_url,
    generate_channel_id,
    group_name,
    validate_channel_id,
)

HYPOTHESIS = settings(max_examples=200, deadline=None)
PREFIX = "/webchannel/v1/channels/"


def is_valid(channel_id: str) -> bool:
    try:
        validate_channel_id(channel_id)
    except InvalidChannelId:
        return False
    return True


@pytest.mark.parametrize(
    "channel_id",
    [
        "a",
        "x" * 128,
        "\u00e9" * 128,
        "t\u00e9st",
        "\U0001f680",
        "\U0001f680" * 128,
        "%",
        "?",
        "100%25?x=1&y",
        "a.b-c_d~e",
        "#hash",
        "\u4e2d\u6587",
        "\u200b",  # zero-width space is a format character, not whitespace
        "..",
        "Xp3-_abcdefghijklmnopqrst",
    ],
)
def test_valid_channel_id(channel_id):
    assert validate_channel_id(channel_id) == channel_id


@pytest.mark.parametrize(
    ("channel_id", "rule"),
    [
        ("", "1 to 128 characters"),
        ("x" * 129, "1 to 128 characters"),
        ("\U0001f680" * 129, "1 to 128 characters"),
        ("a/b", "'/'"),
        ("/", "'/'"),
        ("a b", "whitespace"),
        (" a", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\nb", "whitespace"),
        ("a\rb", "whitespace"),
        ("a\u00a0b", "whitespace"),  # NBSP
        ("a\u2003b", "whitespace"),  # em space
        ("a\u3000b", "whitespace"),  # ideographic space
        ("a\u2028b", "whitespace"),  # line separator
        ("a\u2029b", "whitespace"),  # paragraph separator
        ("a\u1680b", "whitespace"),  # ogham space mark
        ("a\x00b", "control"),
        ("a\x7fb", "control"),
        ("a\x1bb", "control"),
        ("a\x9bb", "control"),  # C1 control
        ("a\ud800b", "control"),  # lone surrogate
        ("\udfff", "control"),
    ],
)
def test_invalid_channel_id_names_the_rule(channel_id, rule):
    with pytest.raises(InvalidChannelId, match=re.escape(rule)):
        validate_channel_id(channel_id)


def test_every_unicode_whitespace_character_is_refused():
    whitespace = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert len(whitespace) > 20
    for char in whitespace:
        assert not is_valid(f"a{char}b"), f"U+{ord(char):04X} accepted"


def test_every_control_character_is_refused():
    controls = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cc", "Cs")]
    for char in controls:
        assert not is_valid(f"a{char}b"), f"U+{ord(char):04X} accepted"


def test_generated_channel_id_is_url_safe_and_long_enough():
    for _ in range(200):
        channel_id = generate_channel_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{21,}", channel_id), channel_id
        assert validate_channel_id(channel_id) == channel_id


def test_generated_channel_ids_are_unique():
    ids = {generate_channel_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_generated_channel_id_carries_at_least_120_bits():
    # Each URL-safe base64 character carries 6 bits.
    assert len(generate_channel_id()) * 6 >= 120


@pytest.mark.parametrize(
    "channel_id", ["a", "x" * MAX_CHANNEL_ID_LENGTH, "t\u00e9st", "\U0001f680", "%?#&=", "..", "a\u200bb"]
)
def test_group_name_is_accepted_by_channels(channel_id):
    name = group_name(channel_id)
    assert BaseChannelLayer().require_valid_group_name(name)
    assert InMemoryChannelLayer().require_valid_group_name(name)


def test_group_name_is_stable():
    assert group_name("t\u00e9st") == group_name("t\u00e9st")


@HYPOTHESIS
@given(st.text(max_size=MAX_CHANNEL_ID_LENGTH).filter(is_valid))
def test_any_valid_channel_id_maps_to_a_group_name_channels_accepts(channel_id):
    assert BaseChannelLayer().require_valid_group_name(group_name(channel_id))


@HYPOTHESIS
@given(
    st.lists(st.text(min_size=1, max_size=MAX_CHANNEL_ID_LENGTH).filter(is_valid), min_size=2, max_size=5, unique=True)
)
def test_distinct_channel_ids_map_to_distinct_group_names(channel_ids):
    assert len({group_name(channel_id) for channel_id in channel_ids}) == len(channel_ids)


def test_ids_differing_only_in_unicode_normalisation_are_distinct_groups():
    # The id is compared as given (after percent-decoding), not after NFC/NFKC folding.
    composed, decomposed = "t\u00e9st", "te\u0301st"
    assert is_valid(composed)
    assert is_valid(decomposed)
    assert group_name(composed) != group_name(decomposed)


def test_ids_differing_only_in_case_are_distinct_groups():
    assert group_name("Abc") != group_name("abc")


# --- ids in URLs: the raw path must be valid percent-encoded UTF-8 ---------------------------------


def lenient(raw: str) -> str:
    """The id as Daphne (and uvicorn) route it: percent-decoded with U+FFFD for bad UTF-8."""
    return unquote(raw)


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("%FF", "not percent-encoded UTF-8"),
        ("a%FFb", "not percent-encoded UTF-8"),
        ("%C3", "not percent-encoded UTF-8"),  # a truncated two-byte sequence
        ("%C3%28", "not percent-encoded UTF-8"),
        ("%ED%A0%80", "not percent-encoded UTF-8"),  # an encoded surrogate
        ("%ZZ", "'%' not followed by two hex digits"),
        ("a%", "'%' not followed by two hex digits"),
        ("a%2", "'%' not followed by two hex digits"),
        ("%%41", "'%' not followed by two hex digits"),
    ],
)
def test_malformed_percent_encoding_in_a_url_is_an_invalid_channel_id(raw, rule):
    with pytest.raises(InvalidChannelId, match=re.escape(rule)):
        channel_id_from_url(lenient(raw), (PREFIX + raw).encode("ascii"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain", "plain"),
        ("t%C3%A9st", "t\u00e9st"),
        ("%EF%BF%BD", "\ufffd"),  # a real U+FFFD, properly encoded, is a valid id
        ("100%25", "100%"),
        ("%f0%9f%9a%80", "\U0001f680"),  # lower-case hex digits
        ("a%2Eb", "a.b"),
    ],
)
def test_well_formed_percent_encoding_gives_the_decoded_id(raw, expected):
    assert channel_id_from_url(lenient(raw), (PREFIX + raw).encode("ascii")) == expected


@pytest.mark.parametrize("raw", ["a%2Fb", "a%20b", "%00"])
def test_a_well_encoded_id_still_obeys_the_id_rules(raw):
    with pytest.raises(InvalidChannelId):
        channel_id_from_url(lenient(raw), (PREFIX + raw).encode("ascii"))


def test_without_a_raw_path_the_routed_id_is_checked_as_it_is():
    assert channel_id_from_url("%ZZ", None) == "%ZZ"
    with pytest.raises(InvalidChannelId):
        channel_id_from_url("a b", None)


@HYPOTHESIS
@given(st.text(min_size=1, max_size=MAX_CHANNEL_ID_LENGTH).filter(is_valid))
def test_any_valid_id_encoded_as_browsers_do_comes_back_unchanged(channel_id):
    raw = quote(channel_id, safe="")
    assert channel_id_from_url(lenient(raw), (PREFIX + raw).encode("ascii")) == channel_id


def test_checked_ids_are_remembered_within_a_bound_and_invalid_ones_never() -> None:
    assert validate_channel_id.cache_info().maxsize == CACHED_IDS
    assert group_name.cache_info().maxsize == CACHED_IDS
    for _ in range(2):  # an invalid id is refused every time, not remembered
        with pytest.raises(InvalidChannelId):
            validate_channel_id("a b")
    assert validate_channel_id("job-1") == "job-1"
    assert group_name("job-1") == group_name("job-1")
