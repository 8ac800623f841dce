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
