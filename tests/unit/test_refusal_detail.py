"""The ``detail`` of a refused subscribe's 403: the access log's reason, then what it means."""

from __future__ import annotations

import pytest

from channels_api.events import REFUSAL_MEANINGS, RefusalReason, refusal_detail


@pytest.mark.parametrize("reason", list(RefusalReason))
def test_every_refusal_reason_is_explained_after_its_name(reason: RefusalReason) -> None:
    assert reason in REFUSAL_MEANINGS
    detail = refusal_detail(reason.value)
    assert detail.startswith(f"{reason.value}: ")
    assert len(detail) > len(reason.value) + 10


def test_a_refusal_without_a_known_reason_still_says_it_was_refused() -> None:
    assert refusal_detail(None) == "the subscribe was refused"
    assert refusal_detail("something_new") == "something_new: the subscribe was refused"
