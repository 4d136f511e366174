"""channels_api.logs: redacted access log lines and the LOGGING setting from WC_LOG."""

from __future__ import annotations

import logging

import pytest

from channels_api.exceptions import ConfigError
from channels_api.logs import LogConfig, log_action, logging_settings, parse_log_spec, redact_path

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJjaWQiOiJzZWNyZXQifQ.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/c/x?access_token=SECRET", "/c/x?access_token=[redacted]"),
        ("/c/x?access_token=SECRET&frames=text", "/c/x?access_token=[redacted]&frames=text"),
        ("/c/x?frames=text&access_token=SECRET", "/c/x?frames=text&access_token=[redacted]"),
        ("/c/x?a=1&access_token=SECRET&b=2", "/c/x?a=1&access_token=[redacted]&b=2"),
        ("/c/x?ACCESS_TOKEN=SECRET&b=2", "/c/x?ACCESS_TOKEN=[redacted]&b=2"),
        ("/c/x?Access_Token=SECRET", "/c/x?Access_Token=[redacted]"),
        ("/c/x?token=SECRET&b=2", "/c/x?token=[redacted]&b=2"),
        ("/c/x?b=2&TOKEN=SECRET", "/c/x?b=2&TOKEN=[redacted]"),
        ("/c/x?api_key=SECRET", "/c/x?api_key=[redacted]"),
        ("/c/x?b=1&API_KEY=SECRET&c=3", "/c/x?b=1&API_KEY=[redacted]&c=3"),
        ("/c/x?x-api-key=SECRET", "/c/x?x-api-key=[redacted]"),
        ("/c/x?access_token=S1&access_token=S2", "/c/x?access_token=[redacted]&access_token=[redacted]"),
        ("/c/x?a=1;access_token=SECRET", "/c/x?a=1;access_token=[redacted]"),
        ("/c/x?access_token=", "/c/x?access_token=[redacted]"),
        ("/c/x?access_token=SECRET#frag", "/c/x?access_token=[redacted]#frag"),
    ],
)
def test_redact_path_hides_secret_query_values(path, expected):
    assert redact_path(path) == expected
    assert "SECRET" not in redact_path(path)
    assert "S1" not in redact_path(path)
    assert "S2" not in redact_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "/webchannel/v1/channels/x",
        "/webchannel/v1/channels/x?frames=text",
        "/c/x?my_token=keep&tokens=keep&access_tokens=keep",
        "/c/x?a=token&b=access_token",
        "/c/token=keep/x",
        "/c/x?wait=5&page=2",
    ],
)
def test_redact_path_keeps_other_params(path):
    assert redact_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "/c/x?access%5Ftoken=SECRET",
        "/c/x?a=1&%61ccess_token=SECRET",
        "/c/x?access%5ftoken=SECRET&b=2",
    ],
)
def test_redact_path_hides_values_of_percent_encoded_secret_names(path):
    # Query parsers (parse_qs, Django's QueryDict) decode names: these are access_token too.
    assert "SECRET" not in redact_path(path)


def http_complete(path: str) -> dict[str, object]:
    return {
        "path": path,
        "status": 204,
        "method": "POST",
        "client": "127.0.0.1:5555",
        "time_taken": 0.0042,
        "size": 0,
    }


def test_http_access_log_line_never_contains_the_token(caplog):
    caplog.set_level(logging.INFO, logger="webchannel.access")
    log_action("http", "complete", http_complete(f"/webchannel/v1/channels/x?access_token={TOKEN}&b=1"))
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert TOKEN not in line
    assert "access_token=[redacted]&b=1" in line
    assert '"POST /webchannel/v1/channels/x?access_token=[redacted]&b=1" 204' in line
    assert line.startswith("127.0.0.1:5555 ")
    assert caplog.records[0].name == "webchannel.access"


@pytest.mark.parametrize("action", ["connected", "disconnected", "rejected"])
def test_websocket_access_log_line_never_contains_the_token(caplog, action):
    caplog.set_level(logging.INFO, logger="webchannel.access")
    log_action("websocket", action, {"path": f"/webchannel/v1/channels/x?token={TOKEN}", "client": "1.2.3.4:5"})
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert TOKEN not in line
    assert action in line


def test_websocket_connecting_is_not_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="webchannel.access")
    log_action("websocket", "connecting", {"path": "/x", "client": "1.2.3.4:5"})
    assert caplog.records == []


def test_access_log_without_client(caplog):
    caplog.set_level(logging.INFO, logger="webchannel.access")
    log_action("http", "complete", {**http_complete("/healthz"), "client": None, "time_taken": None})
    assert '- "POST /healthz" 204' in caplog.records[0].getMessage()


def test_logging_settings_use_the_default_level():
    settings = logging_settings(LogConfig())
    assert settings["root"]["level"] == "INFO"
    assert settings["version"] == 1
    assert settings["disable_existing_loggers"] is False


@pytest.mark.parametrize(
    ("spec", "root"),
    [("debug", "DEBUG"), ("trace", "DEBUG"), ("warn", "WARNING"), ("error", "ERROR"), ("", "INFO")],
)
def test_logging_settings_map_the_default_level(spec, root):
    assert logging_settings(parse_log_spec(spec))["root"]["level"] == root


def test_logging_settings_map_per_logger_levels():
    settings = logging_settings(parse_log_spec("channels_api=debug,django=warning,daphne=error"))
    loggers = settings["loggers"]
    assert loggers["channels_api"]["level"] == "DEBUG"
    assert loggers["django"]["level"] == "WARNING"
    assert loggers["daphne"]["level"] == "ERROR"
    assert settings["root"]["level"] == "INFO"


@pytest.mark.parametrize("spec", ["trace", "debug", "info", "warn", "error", "off", "a=trace,b=warn,c=off"])
def test_every_level_in_logging_settings_is_a_level_logging_knows(spec):
    settings = logging_settings(parse_log_spec(spec))
    levels = [settings["root"]["level"]] + [
        entry["level"] for entry in settings["loggers"].values() if "level" in entry
    ]
    known = logging.getLevelNamesMapping()
    for level in levels:
        assert isinstance(level, int) or level in known, level


# --- WC_LOG parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level", "loggers"),
    [
        ("", "INFO", ()),
        ("debug", "DEBUG", ()),
        ("DEBUG", "DEBUG", ()),
        ("trace", "DEBUG", ()),
        ("info", "INFO", ()),
        ("warn", "WARNING", ()),
        ("warning", "WARNING", ()),
        ("error", "ERROR", ()),
        ("channels_api=debug,django=warning", "INFO", (("channels_api", "DEBUG"), ("django", "WARNING"))),
        ("warn, channels_api.consumers=trace", "WARNING", (("channels_api.consumers", "DEBUG"),)),
        ("channels_api=debug,error", "ERROR", (("channels_api", "DEBUG"),)),
    ],
)
def test_parse_log_spec(text, level, loggers):
    log = parse_log_spec(text)
    assert log.level == level
    assert log.loggers == loggers


def _numeric(level: str | int) -> int:
    return level if isinstance(level, int) else logging.getLevelNamesMapping()[level]


def test_off_silences_even_critical_records():
    log = parse_log_spec("off")
    assert _numeric(log.level) > logging.CRITICAL
    assert _numeric(logging_settings(log)["root"]["level"]) > logging.CRITICAL


def test_off_for_one_logger_silences_its_critical_records():
    (name, level), *_ = parse_log_spec("django=off").loggers
    assert name == "django"
    assert _numeric(level) > logging.CRITICAL


@pytest.mark.parametrize(
    "text", ["verbose", "debug2", "channels_api=loud", "9abc=debug", "=debug", "a b=debug", "a=b=debug", "info;x"]
)
def test_bad_log_spec_is_a_one_line_error_naming_wc_log(text):
    with pytest.raises(ConfigError) as info:
        parse_log_spec(text)
    message = str(info.value)
    assert "\n" not in message
    assert "WC_LOG" in message


def test_log_spec_error_names_where_the_value_came_from():
    with pytest.raises(ConfigError, match=r"^\.env: WC_LOG: cannot read 'loud'"):
        parse_log_spec("loud", where=".env: WC_LOG")
