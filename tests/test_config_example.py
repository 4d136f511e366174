"""config.toml.example stays true to the configuration schema."""

import re
from pathlib import Path

from channels_api.config import keys, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.toml.example"


def test_example_documents_every_key_with_its_env_name():
    text = EXAMPLE.read_text()
    for key in keys():
        section = text.split(f"[{key.section}]", 1)[1].split("\n[", 1)[0]
        assert re.search(rf"^# {key.name} = ", section, re.M), f"{key.dotted} is not in config.toml.example"
        assert key.env_name in section, f"{key.env_name} is not in config.toml.example"


def test_example_loads_as_is_and_with_every_key_uncommented(tmp_path):
    assert load_config(str(EXAMPLE), {}).channel.ttl == 3600
    uncommented = re.sub(r"^# (\w+ = )", r"\1", EXAMPLE.read_text(), flags=re.M)
    path = tmp_path / "config.toml"
    path.write_text(uncommented)
    config = load_config(str(path), {})
    assert config.redis.url == ("redis://127.0.0.1:6379/0",)
    assert config.metrics.auth_enabled is False
    assert config.generated == ()
