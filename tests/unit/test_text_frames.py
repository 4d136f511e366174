"""``?frames=text``'s frame cache: a message is framed once per kind, however many subscribers
of each kind it fans out to. (Text frames on the wire are tested in tests/e2e/subscribe/test_text_frames.py.)"""

from __future__ import annotations


def test_each_message_is_framed_once_per_kind_when_subscribers_mix_kinds():
    """The server's frame cache, driven as a fan-out to alternating binary and text subscribers does."""
    from channels_api.consumers import utf8_text
    from channels_api.server import ws_protocol

    payload = "m\u00e9ssage".encode() * 10
    frames = set()
    for _ in range(5):
        binary = ws_protocol._frame(payload, True)
        text = utf8_text(payload)
        assert text is not None
        text_frame = ws_protocol._frame(ws_protocol._encoded(text), False)
        frames.update({id(binary), id(text_frame)})
    assert len(frames) == 2  # one frame object per kind, reused for every subscriber
    assert binary[0] == 0x82
    assert text_frame[0] == 0x81
    assert binary[2:] == text_frame[2:] == payload
