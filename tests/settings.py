"""Settings for the in-process tests: a known configuration, nothing from the shell's WC_* variables."""

import os

from tests.common import API_KEY, SECRET_KEY

for _name in [n for n in os.environ if n.startswith("WC_")]:
    del os.environ[_name]
# A developer's ./.env in the checkout must not configure the tests.
os.environ["WC_ENV_FILE"] = ""
os.environ["WC_CHANNEL__SECRET_KEY"] = SECRET_KEY
os.environ["WC_CHANNEL__API_KEYS"] = API_KEY

from webchannel_project.settings import *  # noqa: E402, F403
