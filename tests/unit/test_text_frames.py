"""``?frames=text``'s frame cache: a message is framed once per kind, however many subscribers
of each kind it fans out to. (Text frames on the wire are tested in tests/e2e/subscribe/test_text_frames.py.)"""

from __future__ import annotations

from channels_api.framing import Encodings


def test_each_message_is_framed_once_per_kind_when_subscribers_mix_kinds():
    """The encodings cache, driven as a fan-out to alternating binary and text subscribers does."""
    encodings = Encodings()
    payload = "m\u00e9ssage".encode() * 10
    frames = set()
    for _ in range(5):
        binary = encodings.binary_frame(payload)
        text_frame = encodings.text_frame(payload)
        assert text_frame is not None
        frames.update({id(binary), id(text_frame)})
    assert text_frame is not None
    assert len(frames) == 2  # one frame object per kind, reused for every subscriber
    assert binary[0] == 0x82
    assert text_frame[0] == 0x81
    assert binary[2:] == text_frame[2:] == payload


def test_a_payload_that_is_not_utf8_has_no_text_frame_and_a_new_message_new_frames():
    encodings = Encodings()
    assert encodings.text_frame(b"\xff") is None
    first = encodings.binary_frame(b"one")
    assert encodings.binary_frame(b"two") == b"\x82\x03two"
    assert encodings.binary_frame(b"one") is not first  # only the message relayed last is kept
