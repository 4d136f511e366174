"""Settings for the end-to-end test of unexpected errors: webchannel's own, with one more route
(for tests only) whose view raises, since no request from outside makes a webchannel view fail."""

from webchannel_project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.e2e.logs.crash_urls"
