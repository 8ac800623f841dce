"""Helpers the notebooks use to write their artifacts deterministically (tables, figures, JSON).

Everything written here is byte-identical across re-runs of unchanged code, on this machine and on another
one of a different CPU: the forward passes (float32, summed in an order that depends on the CPU's vector
width and the thread count) agree only to about 1e-9 relative (the entropy scores) or 1e-7 (gradient-based
proxies), so every float a stage writes goes through :func:`rounded` first (``DIGITS`` = 6 significant
digits unless a call asks for another precision): JSON with sorted keys (:func:`write_json`), CSV/Markdown
(:func:`write_table`, whose return value is the rounded frame, for display in the notebook), and figures
(:func:`save_figure`: no dates, a fixed ``svg.hashsalt``, axes and the tight bounding box on the pixel
grid, SVG coordinates rounded to 0.1 pt, far below a pixel, lines in the PNG snapped to pixels). Rounding
cannot remove every difference (a value that lies within the noise of a rounding boundary still flips),
but it makes one rare: tests/test_determinism.py checks it, down to whole stages run with 1 and 2 threads.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

DIGITS = 6              # significant digits of every float written by write_json / write_table
SVG_DECIMALS = 1        # decimals of SVG coordinates (points): 0.1 pt = 1/720 inch

PROFILE_NOTE = {
    "paper": "the paper's own settings",
    "default": "the reduced-scale default profile",
    "ci": "the seconds-long CI profile (numbers are smoke-test values, not results)",
}


def _sig(v: float, digits: int) -> float:
    """``v`` rounded to ``digits`` significant digits (the nearest double to the decimal); non-finite kept."""
    v = float(v)
    if v == 0.0 or not math.isfinite(v):
        return v
    return float(f"{v:.{digits}g}")


def rounded(obj, digits: int = DIGITS, columns: dict | None = None):
    """A copy of ``obj`` with every float rounded to ``digits`` significant digits (NaN and inf kept).

    Walks dicts, lists, tuples, numpy arrays and scalars, pandas DataFrames and Series; ints, bools and
    strings are returned unchanged. ``columns`` (DataFrames only) maps column names to their own number of
    digits, e.g. fewer for a float32 proxy whose last digits vary between machines."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str, bytes)):
        return obj
    if isinstance(obj, float):  # includes numpy.float64
        return _sig(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, tuple):
        return tuple(rounded(v, digits) for v in obj)
    mod = type(obj).__module__.split(".")[0]
    if mod == "pandas":
        import pandas as pd

        if isinstance(obj, pd.DataFrame):
            out = obj.copy()
            for i, c in enumerate(out.columns):
                d = (columns or {}).get(c, digits)
                out.isetitem(i, _round_series(out.iloc[:, i], d))
            return out
        if isinstance(obj, pd.Series):
            return _round_series(obj, digits)
    if mod == "numpy":
        import numpy as np

        if isinstance(obj, np.ndarray):
            if obj.dtype.kind == "f":
                return np.array([_sig(v, digits) for v in obj.ravel().tolist()], dtype=obj.dtype).reshape(obj.shape)
            if obj.dtype.kind == "c" or obj.dtype == object:
                return np.array([rounded(v, digits) for v in obj.ravel().tolist()], dtype=obj.dtype).reshape(obj.shape)
            return obj
        if isinstance(obj, np.generic):
            return rounded(obj.item(), digits)
    if isinstance(obj, complex):
        return complex(_sig(obj.real, digits), _sig(obj.imag, digits))
    if hasattr(obj, "tolist"):  # e.g. a torch tensor
        return rounded(obj.tolist(), digits)
    return obj


def _round_series(s, digits: int):
    if s.dtype.kind == "f":
        return s.map(lambda v: _sig(v, digits)).astype(s.dtype)
    if s.dtype == object:
        return s.map(lambda v: rounded(v, digits))
    return s


def _jsonable(obj):
    """Rounded values as JSON can hold them: non-finite floats -> null, keys -> str, tuples -> lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        return _jsonable(obj.tolist())
    return obj


def write_json(obj, path: str | Path, digits: int = DIGITS) -> Path:
    """JSON with sorted keys and floats rounded to ``digits`` significant digits, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(rounded(obj, digits)), indent=1, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def write_table(df, stem: str | Path, floatfmt: str = ".4g", title: str | None = None, note: str | None = None,
                digits: int = DIGITS, columns: dict | None = None):
    """``stem.csv`` and ``stem.md`` (a Markdown table, with an optional title and note).

    Floats are rounded to ``digits`` significant digits (per column with ``columns``, as in :func:`rounded`)
    and then printed with ``floatfmt``. Returns the rounded frame: display that one in the notebook, so the
    rendered report carries no more digits than the files."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    df = rounded(df, digits, columns)
    df.to_csv(stem.with_suffix(".csv"), index=False, float_format=lambda v: format(v, floatfmt))
    md = []
    if title:
        md += [f"### {title}", ""]
    md.append(_markdown(df, floatfmt))
    if note:
        md += ["", note]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    return df


def _markdown(df, floatfmt: str) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


_META = {"svg": {"Date": None}, "png": {"Software": None},
         "pdf": {"CreationDate": None, "ModDate": None, "Producer": None}}
_SVG_DEFS = re.compile(r"(<defs>.*?</defs>)", re.S)
_SVG_ATTR = re.compile(r'(\s(?:d|x|y|x1|y1|x2|y2|cx|cy|r|rx|ry|width|height|viewBox|points)=")([^"]*)(")')
_SVG_TRANSLATE = re.compile(r"(translate\()([^)]*)(\))")
_SVG_NUMBER = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")
_SVG_HASH_ID = re.compile(r'\sid="([a-z][0-9a-f]{10})"')


def round_svg(text: str, decimals: int = SVG_DECIMALS, id_prefix: str = "") -> str:
    """SVG text as written by matplotlib, made insensitive to noise in the last digits of the plotted data.

    * Coordinates are rounded to ``decimals`` decimals (points): path data, x/y/width/height (and the other
      geometry attributes), ``viewBox`` and the ``translate()`` of transforms. Path data inside ``<defs>``
      (marker shapes and glyphs, which do not move with the data and whose small curves rounding would
      deform) is left alone, and so are scales, styles and text.
    * The ids matplotlib derives from a hash of full-precision values (clip paths ``p...``, markers
      ``m...``, hatches ``h...``) are renamed ``<id_prefix><letter><n>`` in order of first appearance."""
    def num(m):
        s = f"{float(m.group(0)):.{decimals}f}"
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        return "0" if s in ("-0", "") else s

    def attr(m):
        if in_defs and m.group(1).strip() == 'd="':
            return m.group(0)
        return m.group(1) + _SVG_NUMBER.sub(num, m.group(2)) + m.group(3)

    parts = _SVG_DEFS.split(text)
    for i, part in enumerate(parts):
        in_defs = i % 2 == 1  # split() puts the <defs> blocks at the odd places
        parts[i] = _SVG_TRANSLATE.sub(attr, _SVG_ATTR.sub(attr, part))
    text = "".join(parts)
    counts: dict[str, int] = {}
    for old in dict.fromkeys(_SVG_HASH_ID.findall(text)):
        n = counts[old[0]] = counts.get(old[0], -1) + 1
        text = re.sub(rf'(id="|#){old}\b', rf"\g<1>{id_prefix}{old[0]}{n}", text)
    return text


PIXEL_OFFSET = 0.3  # where snapped positions sit within a pixel (see _to_pixel)


def _to_pixel(v: float, scale: float) -> float:
    """``v`` rounded to the grid ``(k + PIXEL_OFFSET) / scale``. Layouts put edges at sums of text extents,
    which come in 1/64 pixel: at exactly half a pixel (where plain rounding, and Agg's own snapping, would
    flip with the slightest noise) as often as anywhere. The offset moves the rounding boundaries off
    that lattice, so an edge moves only if its noise is a sizeable fraction of a pixel."""
    return (round(v * scale - PIXEL_OFFSET) + PIXEL_OFFSET) / scale


def _snap_axes(fig, dpi: float) -> None:
    """Axes positions (figure fraction) moved by less than a pixel onto the pixel grid of ``dpi``: a layout
    computed from noisy tick labels (``tight_layout``) then gives the same spines, ticks and labels."""
    w, h = fig.get_size_inches() * dpi
    for ax in fig.axes:
        if ax.get_axes_locator() is not None:
            continue
        p = ax.get_position()
        x0, x1 = _to_pixel(p.x0, w), _to_pixel(p.x1, w)
        y0, y1 = _to_pixel(p.y0, h), _to_pixel(p.y1, h)
        in_layout = ax.get_in_layout()
        ax.set_position([x0, y0, x1 - x0, y1 - y0], which="both")
        ax.set_in_layout(in_layout)  # set_position takes the axes out of the tight bounding box otherwise


def _stable_bbox(fig, dpi: float):
    """The figure's tight bounding box (inches, padded as ``bbox_inches='tight'`` pads it) with its corners on
    the pixel grid (:func:`_to_pixel`): noise in the extents of the artists then no longer shifts the whole
    picture (``bbox_inches='tight'`` moves everything by it)."""
    import matplotlib
    from matplotlib.transforms import Bbox

    fig.draw_without_rendering()  # as savefig does first: layout engines place the axes at draw time
    _snap_axes(fig, dpi)
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else fig._get_renderer()
    pad = matplotlib.rcParams["savefig.pad_inches"]
    bb = fig.get_tightbbox(renderer).padded(pad if isinstance(pad, (int, float)) else 0.1)
    return Bbox([[_to_pixel(v, fig.dpi) for v in bb.p0], [_to_pixel(v, fig.dpi) for v in bb.p1]])


_RASTER = ("png", "jpg", "jpeg", "tif", "tiff", "webp")


@contextlib.contextmanager
def _snapped(fig):
    """Lines without markers (whose snapping is left to matplotlib) drawn with their vertices snapped to
    pixel centres, as Agg always does for markers, text and rectilinear paths: a curve through noisy data
    then lands on the same pixels, where antialiasing at 1/256 pixel lets 1e-7 relative noise change some.
    (Markers themselves are not snapped: that would square small circles.)"""
    from matplotlib.lines import Line2D

    arts = fig.findobj(lambda a: isinstance(a, Line2D) and a.get_marker() in (None, "None", "", " ")
                       and a.get_snap() is None)
    old = [a.get_snap() for a in arts]
    for a in arts:
        a.set_snap(True)
    try:
        yield
    finally:
        for a, v in zip(arts, old):
            a.set_snap(v)


def save_figure(fig, stem: str | Path, formats=("png", "svg"), dpi: int = 110,
                svg_decimals: int = SVG_DECIMALS) -> list[Path]:
    """Save ``stem.png`` / ``stem.svg`` (/ ``.pdf``) so that unchanged code gives identical files, here and on
    another machine: no creation dates or software tags, a fixed ``svg.hashsalt`` (the ids of clip paths and
    markers), axes positions and the tight bounding box on the pixel grid (:func:`_stable_bbox`; this moves
    the axes of ``fig`` by less than a pixel), SVG coordinates rounded to ``svg_decimals`` decimals of a point
    (:func:`round_svg`), and in the PNG lines drawn snapped to pixel centres (:func:`_snapped`; Agg snaps
    markers and text anyway). Noise of 1e-9 relative in the plotted data then leaves both files unchanged
    (tests/test_determinism.py). Noisier data (float32 gradient proxies, ~1e-7) should be plotted rounded
    (:func:`rounded`): that keeps the axis limits, and so the whole layout, exactly the same."""
    import matplotlib

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with matplotlib.rc_context({"svg.hashsalt": "maedet"}):
        bbox = _stable_bbox(fig, dpi)
        for ext in formats:
            p = stem.with_suffix("." + ext)
            kw = {"metadata": _META[ext]} if ext in _META else {}
            tmp = p.with_name(p.name + ".tmp")
            if ext == "svg":
                buf = io.BytesIO()
                fig.savefig(buf, format="svg", dpi=dpi, bbox_inches=bbox, **kw)
                tmp.write_text(round_svg(buf.getvalue().decode("utf-8"), svg_decimals, f"{stem.name}-"),
                               encoding="utf-8")
            elif ext in _RASTER:
                with _snapped(fig):
                    fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches=bbox, **kw)
            else:
                fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches=bbox, **kw)
            tmp.replace(p)
            out.append(p)
    return out


def banner(profile: str, stage: str) -> str:
    return f"**Stage `{stage}`, profile `{profile}`** ({PROFILE_NOTE.get(profile, profile)})."


def rel_diff(ours: float, paper: float | None) -> float | None:
    if paper in (None, 0) or ours is None:
        return None
    return 100.0 * (ours / paper - 1.0)


def progress(iterable=None, **kw):
    """A tqdm bar that never lands in a rendered notebook (whose outputs must not hold timings).

    In a script it goes to the terminal (stderr). Inside a notebook kernel (papermill, the DVC stages,
    JupyterLab) ipykernel forwards even the process's own stderr into the cell outputs, so there the bar is
    written to ``logs/progress.log`` under the working directory instead: follow a running stage with
    ``tail -f logs/progress.log``."""
    import sys

    from tqdm import tqdm

    kw.setdefault("mininterval", 5.0)
    if "ipykernel" in sys.modules:
        log = Path("logs")
        log.mkdir(exist_ok=True)
        kw["file"] = open(log / "progress.log", "a", buffering=1)  # noqa: SIM115 (lives as long as the bar)
    else:
        kw["file"] = sys.__stderr__
    return tqdm(iterable, **kw)
