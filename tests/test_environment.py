"""The environment descriptions agree with each other and with what is installed."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_environment_yml_matches_pip_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = _pins(pip_list)
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    torch_pins = _pins(re.search(r'TORCH_PINS="([^"]+)"', setup).group(1).split())
    assert {k: conda_pins.get(k) for k in req} == req
    assert {k: conda_pins.get(k) for k in torch_pins} == torch_pins
    assert "python=3.11" in env["dependencies"]


def test_constraints_agree_with_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    cons = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in req.items():
        assert cons.get(name, version) == version, name


def test_installed_versions_are_the_pinned_ones():
    import importlib.metadata as md

    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    for name in ("mmengine", "mmdet", "numpy", "dvc", "papermill"):
        assert md.version(name) == req[name]
    assert md.version("mmcv") == "2.1.0"
    assert md.version("torch").startswith("2.14.1")
