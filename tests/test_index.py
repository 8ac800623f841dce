import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_reports_index_is_current():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_index.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def test_every_paper_item_names_existing_stages_or_says_what_is_pending():
    items = yaml.safe_load((ROOT / "docs" / "paper_items.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    names = {it["item"] for it in items}
    for n in [f"Table {i}" for i in range(1, 16)] + [f"Figure {i}" for i in range(4, 11)]:
        assert n in names, n
    for it in items:
        missing = [s for s in it.get("stages") or [] if s not in stages]
        assert not missing or it.get("pending"), (it["item"], missing)
