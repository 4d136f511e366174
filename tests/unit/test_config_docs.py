"""docs/reference/configuration.md is exactly what ``python -m channels_api.config_docs`` renders."""

from pathlib import Path

from channels_api.config import keys
from channels_api.config_docs import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "configuration.md"


def test_the_committed_configuration_reference_is_rendered_from_the_schema():
    text = render()
    assert all(f"`{key.dotted}`" in text and f"`{key.env_name}`" in text for key in keys())
    assert PAGE.read_text(encoding="utf-8") == text, (
        "docs/reference/configuration.md is out of date: "
        "python -m channels_api.config_docs > docs/reference/configuration.md"
    )
