"""``manage.py check --deploy`` reports exactly what the README says, with the default
configuration and with a production-like one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness import REPO, clean_env, timeout, toml

CHECK_ID = re.compile(r"\(((?:security|channels_api|[a-z_]+)\.[EWIC]\d{3})\)")
SECRET = "production-secret-0123456789abcdef0123"
PRODUCTION: dict[str, dict[str, Any]] = {
    "server": {"allowed_hosts": ["push.example.com"], "cors_origins": ["https://app.example.com"]},
    "channel": {"secret_key": SECRET, "api_keys": ["production-key-0123456789"]},
    "redis": {"url": "redis://127.0.0.1:6379/0"},
    "metrics": {"auth_enabled": True, "auth_username": "prometheus", "auth_password": "metrics-pw-0123456789"},
}


def check_deploy(tmp_path: Path, config: dict | None) -> tuple[set[str], str]:
    """Run the check as an operator would (from the repository, no WC_* variables); return the ids and the output."""
    command = [sys.executable, "manage.py", "check", "--deploy"]
    if config is not None:
        path = tmp_path / "config.toml"
        path.write_text(toml(config))
        env = clean_env(WC_CONFIG_FILE=str(path))
    else:
        env = clean_env()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout(60))
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    return set(CHECK_ID.findall(output)), output


def readme_paragraph() -> str:
    text = (REPO / "docs" / "operations" / "deployment.md").read_text()
    start = text.index("`manage.py check --deploy`")
    return text[start : text.index("\n\n", start)]


def test_default_configuration_reports_only_unauthenticated_metrics(tmp_path):
    ids, output = check_deploy(tmp_path, None)
    assert ids == {"channels_api.W002"}, output
    assert "(3 silenced)" in output


def test_production_like_configuration_reports_no_issues(tmp_path):
    ids, output = check_deploy(tmp_path, PRODUCTION)
    assert ids == set(), output
    assert "no issues (3 silenced)" in output


def test_a_short_secret_is_reported(tmp_path):
    config = {**PRODUCTION, "channel": {**PRODUCTION["channel"], "secret_key": "short-secret"}}
    ids, output = check_deploy(tmp_path, config)
    assert ids == {"channels_api.W001"}, output


def test_the_readme_names_what_appears_and_what_is_silenced():
    from django.conf import settings

    paragraph = readme_paragraph()
    named = set(re.findall(r"`((?:security|channels_api)\.[EW]\d{3})`", paragraph))
    silenced = set(settings.SILENCED_SYSTEM_CHECKS)
    assert silenced <= named, f"README does not name every silenced check: {silenced - named}"
    assert {"channels_api.W001", "channels_api.W002"} <= named
    assert "3 silenced" in paragraph
    assert len(silenced) == 3
