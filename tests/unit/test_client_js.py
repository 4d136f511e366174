"""The browser subscriber module, ``channels_api/static/webchannel.js``, as a file: small, without
dependencies, receive-only. (Its endpoint is tested in tests/e2e/client/test_client_js.py, the module
itself in Chromium in tests/browser/test_client_js.py.)"""

from __future__ import annotations

import re

from tests.harness import REPO

MODULE_FILE = REPO / "channels_api" / "static" / "webchannel.js"


def test_module_is_small_self_contained_and_never_sends() -> None:
    source = MODULE_FILE.read_text(encoding="utf-8")
    assert len(source.splitlines()) < 150
    assert not re.search(r"^\s*import\b|\bimport\(|\brequire\(", source, re.MULTILINE), "the module has no dependencies"
    assert ".send(" not in source, "subscriber sockets are receive-only: sending data closes them with 4003"
    assert "export function subscribe(" in source
