"""One definition of the scored dimensions: editrl.dimensions.DIMENSIONS, re-exported by editworld."""

import re
from pathlib import Path

from editrl.dimensions import DIMENSIONS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("editrl", "editworld", "reward", "rollout", "policy", "curation")


def test_the_contract_order_and_its_users():
    import editworld
    from reward.model.config import RewardModelConfig
    from reward.train import data

    assert DIMENSIONS == ("instruction_following", "visual_quality")
    assert editworld.DIMENSIONS is DIMENSIONS and data.DIMENSIONS is DIMENSIONS
    assert RewardModelConfig().dimensions == DIMENSIONS


def test_no_package_module_spells_the_tuple_again():
    literal = re.compile(r"""\(\s*["']instruction_following["']\s*,\s*["']visual_quality["']\s*\)""")
    copies = [str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
              if p.name != "dimensions.py" and literal.search(p.read_text())]
    assert copies == []
