"""Fixtures shared by the browser tests: the instrumented Chromium page of ``test_browser.py``."""

from tests.browser.test_browser import page  # noqa: F401 - a fixture, for every module here
