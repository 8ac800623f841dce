"""make verify's pieces without training: the sample, rebuilding a run from its record, the comparison."""
import copy

import pytest

from maedet import ledger, verify


@pytest.fixture(scope="module")
def recs():
    r = ledger.records("ledger/runs")
    if not r:
        pytest.skip("the committed ledger is empty")
    return r


def test_sample_is_one_run_per_head_lowest_seed(recs):
    picked = verify.sample(list(reversed(recs)))
    assert picked == verify.sample(recs)  # independent of the order
    heads = sorted({r["head"] for r in recs if r["kind"] == "detect"})
    assert [p["head"] for p in picked] == heads
    for p in picked:
        same = [r for r in recs if r["head"] == p["head"]]
        assert p["seed"] == min(r["seed"] for r in same)
    assert len(verify.sample(recs, limit=1)) == 1
    with pytest.raises(verify.VerifyError, match="limit"):
        verify.sample(recs, limit=0)


def test_run_of_rebuilds_the_recorded_digest(recs):
    rec = verify.sample(recs, limit=1)[0]
    run = verify.run_of(rec)
    assert ledger.digest(run) == rec["digest"]
    other = copy.deepcopy(rec)
    other["settings"]["versions"]["torch"] = "0.0.1"
    other["digest"] = ledger.digest_of(other["settings"])
    with pytest.raises(verify.VerifyError, match="versions differ"):
        verify.run_of(other)


def test_compare_and_spread(recs, tmp_path):
    rec = verify.sample(recs, limit=1)[0]
    same = copy.deepcopy(rec)
    moved = copy.deepcopy(rec)
    moved["metrics"]["AP"] += 0.7
    moved["machine"] = "another CPU x2"
    t = verify.compare(recs, [same, moved])
    assert list(t["identical"]) == [True, False]
    assert t["AP diff"].tolist() == pytest.approx([0.0, 0.7])
    s = verify.spread(t)
    assert s["replicas"] == 2 and s["identical"] == 1 and s["cross-machine"] == 1
    assert s["AP |diff| max"] == pytest.approx(0.7)
    # replicas are kept under distinct names and read back validated
    for r in (same, moved):
        p = verify.replica_path(r["digest"], tmp_path)
        p.write_text(__import__("json").dumps(r))
    assert len(verify.replicas(tmp_path)) == 2
    bad = tmp_path / f"{rec['digest']}.x.9.json"
    bad.write_text(__import__("json").dumps({**rec, "digest": "0" * 16}))
    with pytest.raises(verify.VerifyError, match="digest"):
        verify.replicas(tmp_path)
