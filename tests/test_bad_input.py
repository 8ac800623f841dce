"""Valid-looking but absurd input: every command answers within seconds with one line, exit 2, no files."""
import json
import subprocess
import sys

import pytest

from maedet import zoo
from maedet.structure import LIMITS


def _maedet(*argv, cwd=None, timeout=60):
    p = subprocess.run([sys.executable, "-m", "maedet", *map(str, argv)], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def _edited(tmp_path, block: int, field: str, value) -> str:
    d = zoo.get("maedet-m").to_dict()
    d["blocks"][block][field] = value
    p = tmp_path / "edited.json"
    p.write_text(json.dumps(d))
    return str(p)


@pytest.mark.parametrize("block,field,value,limit", [
    (1, "depth", 1_000_000_000, LIMITS["depth"]),
    (4, "depth", 10**6, LIMITS["depth"]),
    (2, "out_channels", 10**9, LIMITS["channels"]),
    (3, "bottleneck", 10**7, LIMITS["channels"]),
    (2, "kernel", 10**6 + 1, LIMITS["kernel"]),
])
@pytest.mark.parametrize("command", [["flops", "--resolution", "1280x800"], ["score", "--estimator", "closed-form"]])
def test_absurd_sizes_are_rejected_at_load_time(tmp_path, command, block, field, value, limit):
    path = _edited(tmp_path, block, field, value)
    rc, out, err = _maedet(command[0], path, *command[1:], timeout=30)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert f"block {block}" in err and f"'{field}'" in err and str(limit) in err


def test_resume_without_checkpoint_fails_and_writes_nothing(tmp_path):
    out = tmp_path / "empty"
    rc, _, err = _maedet("search", "--init", "init", "--budget-layers", "91", "--iterations", "5", "--resume",
                         "--out", out)
    assert rc == 2 and "no search to resume" in err and err.count("\n") == 1
    assert not out.exists()
    out.mkdir()
    rc, _, err = _maedet("search", "--init", "init", "--budget-layers", "91", "--iterations", "5", "--resume",
                         "--out", out)
    assert rc == 2 and list(out.iterdir()) == []


@pytest.mark.parametrize("argv,needle", [
    (["search", "--init", "init", "--iterations", "5"], "needs a budget"),
    (["search", "--init", "init", "--budget-layers", "91", "--iterations", "10000000000"], "iterations"),
    (["search", "--init", "init", "--budget-layers", "91", "--population", "1000000000"], "population"),
    (["score", "maedet-m", "--resolution", "100000"], "limit"),
    (["score", "maedet-m", "--batch-size", "1000000"], "batch_size"),
    (["score", "maedet-m", "--repeats", "1000000"], "repeats"),
    (["score", "maedet-m", "--batch-size", "512", "--resolution", "2048"], "input pixels"),
])
def test_runaway_settings_are_rejected(tmp_path, argv, needle):
    out = tmp_path / "out"
    if argv[0] == "search":
        argv = argv + ["--out", str(out)]
    rc, stdout, err = _maedet(*argv, timeout=30)
    assert rc == 2 and needle in err and err.count("\n") == 1 and stdout == ""
    assert not out.exists()


def test_limits_leave_every_zoo_structure_valid():
    for name in zoo.names():
        s = zoo.get(name)
        assert max(b.depth for b in s.blocks) <= LIMITS["depth"] and s.layers <= LIMITS["layers"]


def test_repeated_units_are_counted_without_expansion():
    """FLOPs/params and the closed-form score of a deep super-block come from two units and a multiplicity,
    and equal the unit-by-unit sum."""
    from maedet import flops
    from maedet.score import ScoreSettings, score

    s = zoo.get("maedet-m")
    blk = s.blocks[3]
    groups = blk.unit_groups(s.shortcut)
    assert [m for _, m in groups] == [1, blk.depth - 1] and groups[1][0] == blk.units(s.shortcut)[-1]
    deep = s.with_block(3, depth=LIMITS["depth"])
    c = flops.count(deep, (800, 1280))
    # unit-by-unit: add the per-unit cost of the extra units to the original count
    extra = flops.count(deep, (800, 1280)).params - flops.count(s, (800, 1280)).params
    one_unit = sum(op.fan_in * op.out_channels + 2 * op.out_channels for op in blk.units(s.shortcut)[1].main)
    assert extra == (LIMITS["depth"] - blk.depth) * one_unit and c.layers == deep.layers
    assert score(deep, "closed-form", (0, 0, 1, 1, 6), ScoreSettings(64, 1, 1)).score > 0
