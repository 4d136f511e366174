"""Schemathesis hooks for the OpenAPI fuzzing test, loaded by the CLI through ``SCHEMATHESIS_HOOKS``.

A valid ``?wait=S`` on a publish makes the server wait up to S seconds (30 at most) for a
subscriber that fuzzing never brings; each such request is shortened to a valid 0.01 s so the
run stays bounded. Whether a value is valid is decided by the document's own pattern, so
invalid values are sent as generated and their 400 is still checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import schemathesis

DOCUMENT = Path(__file__).resolve().parents[3] / "channels_api" / "openapi.json"
SHORT_WAIT = "0.01"


def _wait_pattern() -> re.Pattern[str]:
    publish = json.loads(DOCUMENT.read_text(encoding="utf-8"))["paths"]["/webchannel/v1/channels/{channelId}"]["post"]
    (wait,) = (parameter for parameter in publish["parameters"] if parameter["name"] == "wait")
    # JSON Schema's "$" is the end of the text; Python's would also allow a final newline.
    return re.compile(wait["schema"]["pattern"].removesuffix("$") + r"\Z")


WAIT = _wait_pattern()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Shorten a valid ``wait`` (one value, not a list) to :data:`SHORT_WAIT`."""
    query = case.query
    if isinstance(query, dict) and isinstance(query.get("wait"), str) and WAIT.match(query["wait"]):
        query["wait"] = SHORT_WAIT
