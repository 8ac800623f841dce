"""Report helpers: deterministic artifacts, and progress bars that never reach a rendered notebook."""
import sys
import types

from maedet import report


def test_write_json_is_deterministic(tmp_path):
    a = report.write_json({"b": 1.23456789012345, "a": [float("nan"), 2]}, tmp_path / "x.json", digits=6)
    first = a.read_bytes()
    report.write_json({"a": [float("nan"), 2], "b": 1.23456789012345}, a, digits=6)
    assert a.read_bytes() == first and first.startswith(b'{\n "a": [\n  null')


def test_progress_goes_to_a_log_file_inside_a_kernel(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    bar = report.progress(range(3), desc="work", mininterval=0)
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert "work" in (tmp_path / "logs" / "progress.log").read_text()
    assert "work" not in capsys.readouterr().err


def test_progress_goes_to_stderr_in_a_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    bar = report.progress(range(2), desc="work", mininterval=0)
    assert bar.fp is not None and list(bar) == [0, 1]
    bar.close()
    assert not (tmp_path / "logs").exists()


def test_write_table_renders_missing_values_as_empty_cells(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"proxy": ["zen", "snip"], "low": [None, 0.25], "note": [pd.NA, "x"], "v": [float("nan"), 1.0]})
    report.write_table(df, tmp_path / "t")
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[2] == "| zen |  |  |  |" and md[3] == "| snip | 0.25 | x | 1 |"
    assert "None" not in (tmp_path / "t.csv").read_text() and "<NA>" not in (tmp_path / "t.csv").read_text()
