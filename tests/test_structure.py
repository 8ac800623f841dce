import json

import pytest

from maedet import zoo
from maedet.structure import (Block, Structure, StructureError, depth_to_paper_layers, load,
                              paper_layers_to_depth, validate)


def test_paper_notation_is_converted_explicitly():
    assert paper_layers_to_depth("bottleneck", 5) == 10
    assert paper_layers_to_depth("conv", 1) == 1
    assert depth_to_paper_layers("bottleneck", 10) == 5
    assert depth_to_paper_layers("bottleneck", 3) == 1.5
    m = zoo.get("maedet-m")
    # Table 12 prints "# layers" 1, 5, 5, 4: bottleneck counts 2, 10, 10, 8 (facts file, section 2)
    assert [b.depth for b in m.blocks] == [1, 2, 10, 10, 8]


def test_table_prints_the_paper_notation_and_units_never_half_a_layer():
    m = zoo.get("maedet-m")
    rows = m.table().splitlines()
    assert "| # layers | units |" in rows[0] and len(rows) == 2 + len(m.blocks)
    assert rows[3].startswith("| ResBlock | 3 | 64 | 120 |") and "| 5 | 10 | C3 |" in rows[4]
    d = m.to_dict()
    d["blocks"][3]["depth"] = 11  # an odd number of bottlenecks: no whole "# layers" in the paper's notation
    rows = Structure.from_dict(d).table().splitlines()
    assert "| - | 11 | C4 |" in rows[5] and "5.5" not in "\n".join(rows)


@pytest.mark.parametrize("name,layers", [("maedet-s", 79), ("maedet-m", 91), ("maedet-l", 109),
                                         ("table4-single-coarse", 91), ("table4-multi-coarse", 91),
                                         ("resnet50", 49), ("resnet101", 100)])
def test_layer_counts(name, layers):
    assert zoo.get(name).layers == layers


def test_stages_follow_output_stride():
    r = zoo.get("resnet50")
    assert r.num_stages == 5
    assert r.stage_strides == [2, 4, 8, 16, 32]
    assert r.stage_channels == [64, 256, 512, 1024, 2048]
    t = zoo.get("table4-single-coarse")  # C5 spans three rows of Table 10
    assert t.stage_of_block == [0, 1, 2, 3, 4, 4, 4]
    assert t.stage_channels == [96, 208, 560, 1264, 2048]
    assert t.stage_layers() == [1, 12, 6, 12, 60]


def test_json_round_trip_and_paper_layers_field(tmp_path):
    for n in zoo.names():
        s = zoo.get(n)
        assert Structure.from_json(s.to_json()) == s
    d = zoo.get("maedet-m").to_dict()
    for b in d["blocks"][1:]:
        b["paper_layers"] = b.pop("depth") // 2
    assert Structure.from_dict(d) == zoo.get("maedet-m")
    p = tmp_path / "m.json"
    zoo.get("maedet-m").save(p)
    assert load(str(p)) == zoo.get("maedet-m")
    # a search summary (best.json) is loadable too
    (tmp_path / "best.json").write_text(json.dumps({"structure": d, "score": 1.0}))
    assert load(str(tmp_path / "best.json")) == zoo.get("maedet-m")


def _bad(mutator):
    d = zoo.get("maedet-m").to_dict()
    mutator(d)
    with pytest.raises(StructureError) as e:
        Structure.from_dict(d)
    return str(e.value)


def test_validation_names_block_and_field():
    assert "block 2" in (m := _bad(lambda d: d["blocks"][2].update(in_channels=100))) and "in_channels" in m
    assert "block 1" in (m := _bad(lambda d: d["blocks"][1].update(bottleneck=-8))) and "bottleneck" in m
    assert "unknown type" in _bad(lambda d: d["blocks"][3].update(type="transformer"))
    assert "kernel" in _bad(lambda d: d["blocks"][3].update(kernel=4))
    assert "stride" in _bad(lambda d: d["blocks"][3].update(stride=3))
    assert "depth" in _bad(lambda d: d["blocks"][3].update(depth=0))
    assert "missing field 'kernel'" in _bad(lambda d: d["blocks"][3].pop("kernel"))
    assert "integer" in _bad(lambda d: d["blocks"][3].update(out_channels="wide"))
    assert "unknown field" in _bad(lambda d: d["blocks"][3].update(colour="red"))
    with pytest.raises(StructureError, match="not valid JSON"):
        Structure.from_json("{nope")
    with pytest.raises(StructureError, match="neither a zoo name"):
        load("no-such-structure")


def test_other_block_types_fit_the_representation():
    s = validate(Structure((Block("conv", 3, 3, 16, 2), Block("mbv2", 3, 16, 24, 2, 96, 2),
                            Block("mbv2", 5, 24, 40, 2, 144, 3))))
    assert s.layers == 1 + 3 * 5
    units = s.blocks[1].units()
    assert units[0].main[1].groups == 96  # depthwise
    assert units[0].shortcut is None and units[1].shortcut == ()


def test_with_block_propagates_width():
    m = zoo.get("maedet-m")
    c = m.with_block(2, out_channels=640)
    assert c.blocks[3].in_channels == 640
    validate(c)
    assert c.key() != m.key() and c.name == ""
