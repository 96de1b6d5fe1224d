"""docs/configuration.md is generated from the config dataclasses and must match them; every field is documented."""

from pathlib import Path

from editrl.config_reference import COMMANDS, _load, render, section_rows

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_reference_is_in_sync_with_the_dataclasses():
    assert REFERENCE.read_text() == render(), "regenerate it: python -m editrl.config_reference"


def test_every_config_field_has_a_comment():
    missing = [f"{target} {key}" for _, target in COMMANDS for _, rows in section_rows(_load(target))
               for key, _, _, doc in rows if not doc]
    assert missing == []
