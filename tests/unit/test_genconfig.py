"""manage.py genconfig: a complete configuration from the schema, fresh secrets, never a clobbered file."""

from __future__ import annotations

import io
import re
import stat
import tomllib
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import strategies as st

from channels_api.config import keys, load_config
from channels_api.management.commands.genconfig import render, toml_value


def genconfig(*args: str) -> str:
    out = io.StringIO()
    call_command("genconfig", *args, stdout=out)
    return out.getvalue()


def load_text(tmp_path: Path, text: str, name: str = "config.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_config(str(path), {})


def test_stdout_is_toml_that_the_loader_accepts_with_the_generated_secrets(tmp_path):
    text = genconfig()
    document = tomllib.loads(text)
    config = load_text(tmp_path, text)
    assert config.generated == ()
    assert config.channel.secret_key == document["channel"]["secret_key"]
    assert len(config.channel.secret_key) >= 43  # 32 random bytes
    assert config.channel.api_keys == tuple(document["channel"]["api_keys"])
    assert len(config.channel.api_keys) == 1


def test_two_runs_give_different_secrets():
    first, second = (tomllib.loads(genconfig())["channel"] for _ in range(2))
    assert first["secret_key"] != second["secret_key"]
    assert first["api_keys"] != second["api_keys"]
    assert first["api_keys"][0] != first["secret_key"]


def test_every_key_of_the_schema_is_documented_in_its_section():
    text = render("s", "k")
    for key in keys():
        section = text.split(f"\n[{key.section}]\n", 1)[1].split("\n[", 1)[0]
        block = re.search(rf"((?:^# .*\n)+)^(?:# )?{key.name} = ", section, re.M)
        assert block, f"{key.dotted} is not in the generated file"
        assert f"# env: {key.env_name}\n" in block.group(1)
        assert " ".join(key.help.split()[:3]) in block.group(1), f"{key.dotted} has no help comment"


def test_only_the_secrets_are_set_and_every_commented_key_shows_a_value_the_loader_accepts(tmp_path):
    text = render("s" * 43, "the-api-key")
    set_keys = {name: table for name, table in tomllib.loads(text).items() if table}
    assert set_keys == {"channel": {"secret_key": "s" * 43, "api_keys": ["the-api-key"]}}
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.M)
    config = load_text(tmp_path, uncommented)
    for key in keys():
        if key.default is not None and not key.secret:
            assert getattr(getattr(config, key.section), key.name) == key.default, key.dotted


@given(st.text(st.characters(blacklist_categories=["Cs"])))
def test_any_string_survives_a_toml_round_trip(text):
    assert tomllib.loads(f"v = {toml_value(text)}")["v"] == text


@pytest.mark.parametrize("value", [True, False, 0, 4194304, 20.0, 1e20, (), ("*",), ['a"b', "c\\d"], "x\x00\x7f\n"])
def test_values_are_spelled_as_toml(value):
    expected = list(value) if isinstance(value, tuple) else value
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == expected


def test_output_file_is_private_and_only_its_path_is_printed(tmp_path):
    path = tmp_path / "webchannel.toml"
    printed = genconfig("-o", str(path))
    document = tomllib.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert printed.count("\n") == 1
    assert str(path) in printed
    assert document["channel"]["secret_key"] not in printed
    assert document["channel"]["api_keys"][0] not in printed
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_an_existing_file_is_never_overwritten_without_force(tmp_path):
    path = tmp_path / "webchannel.toml"
    path.write_text("precious")
    with pytest.raises(CommandError, match="exists") as raised:
        genconfig("-o", str(path))
    assert raised.value.returncode == 2
    assert path.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_dangling_symlink_is_not_followed_without_force(tmp_path):
    target = tmp_path / "elsewhere.toml"
    (tmp_path / "link.toml").symlink_to(target)
    with pytest.raises(CommandError, match="exists"):
        genconfig("-o", str(tmp_path / "link.toml"))
    assert not target.exists()


def test_force_replaces_the_file_with_a_private_fresh_one(tmp_path):
    path = tmp_path / "webchannel.toml"
    path.write_text("old")
    path.chmod(0o644)
    genconfig("-o", str(path), "--force")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_text(tmp_path, path.read_text(), "copy.toml").generated == ()
    first = path.read_text()
    genconfig("-o", str(path), "--force")
    assert path.read_text() != first


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    with pytest.raises(CommandError, match=r"cannot write .*: No such file or directory") as raised:
        genconfig("-o", str(tmp_path / "missing" / "webchannel.toml"))
    assert raised.value.returncode == 2
