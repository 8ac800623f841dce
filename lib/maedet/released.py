"""Structure files of the authors' released code, read and written.

The released code (alibaba/lightweight-neural-architecture-search) stores a backbone as a Python literal:
a list of block dicts (first release, 2022: ``scripts/detection/models/maedet_*.txt``, a search's
``best_structure.txt``), or a dict ``{'best_structures': [[...], ...], 'space_arch': 'CnnNet'}`` (current
form; its ``tools/export.py`` writes the same dict as JSON). Each block is
``{'class', 'in', 'out', 's', 'k'}`` plus, for a residual super-block, ``'L'`` and ``'btn'``.

Block classes understood: ``ConvKXBNRELU`` (our ``conv``) and ``SuperResK1KXK1`` / ``SuperResConvK1KXK1``
(the same bottleneck super-block under its current and first-release names; our ``bottleneck``).

``L`` of a super-block counts its bottleneck blocks, as our ``Block.depth`` does, so a paper row
"# layers = L" is ``2L`` in these files (:data:`UNITS_PER_L`, then
:func:`maedet.structure.depth_to_paper_layers`).

Text is parsed with ``ast.literal_eval`` (never ``eval``).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from .structure import Structure, StructureError, validate, Block

UNITS_PER_L = 1  # bottleneck blocks per unit of the released 'L' (ours: Block.depth); paper "# layers" = L / 2

CONV = "ConvKXBNRELU"
BOTTLENECK = ("SuperResK1KXK1", "SuperResConvK1KXK1")  # current name, first-release name
FORMS = ("released", "released-v1")  # dict with best_structures / bare list (first release)
_REQUIRED = {CONV: ("in", "out", "k"), **{c: ("in", "out", "k", "L", "btn") for c in BOTTLENECK}}


class ReleasedError(StructureError):
    """A released-format file that cannot be read or a structure that cannot be written in that format."""


def parse(text: str, index: int = 0) -> list[dict]:
    """The block list of a released file's text (JSON or a Python literal); ``index`` picks one of
    ``best_structures`` (0 = the best)."""
    try:
        obj = json.loads(text)
    except ValueError:
        try:
            obj = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
            raise ReleasedError(f"not a JSON or Python-literal structure file ({type(e).__name__})") from None
    if isinstance(obj, dict) and "best_structures" in obj:
        best = obj["best_structures"]
        if not isinstance(best, list) or not best:
            raise ReleasedError("'best_structures' must be a non-empty list")
        if not 0 <= index < len(best):
            raise ReleasedError(f"index {index}: the file holds {len(best)} structure(s)")
        obj = best[index]
    elif isinstance(obj, dict) and "structure" in obj:  # a search's nas_info
        obj = obj["structure"]
    if not isinstance(obj, list) or not obj or not all(isinstance(b, dict) for b in obj):
        raise ReleasedError("expected a list of block dicts, or a dict with 'best_structures'")
    return obj


def is_released(obj) -> bool:
    """Does a parsed object look like a released structure (rather than ours)?"""
    if isinstance(obj, dict):
        return "best_structures" in obj or (isinstance(obj.get("structure"), list))
    return isinstance(obj, list) and bool(obj) and all(isinstance(b, dict) and "class" in b for b in obj)


def _int(b: dict, i: int, key: str, default=None) -> int:
    v = b.get(key, default)
    if v is None:
        raise ReleasedError(f"block {i} ({b.get('class')}): missing field '{key}'")
    if isinstance(v, bool) or not isinstance(v, int):
        raise ReleasedError(f"block {i} ({b.get('class')}): field '{key}' must be an integer, got {v!r}")
    return v


def from_blocks(blocks: list[dict], name: str = "", source: str = "") -> Structure:
    """Our :class:`Structure` of a released block list."""
    out = []
    for i, b in enumerate(blocks):
        cls = b.get("class")
        if cls not in _REQUIRED:
            raise ReleasedError(f"block {i}: unsupported block class {cls!r} "
                                f"(supported: {', '.join(_REQUIRED)})")
        k = _int(b, i, "k")
        allowed = {"class", "s", "p", "g", "act", "force_resproj_skip", *_REQUIRED[cls]}
        extra = sorted(set(b) - allowed)
        if extra:
            raise ReleasedError(f"block {i} ({cls}): unsupported field(s) {', '.join(extra)}")
        for key, default in (("g", 1), ("p", (k - 1) // 2), ("act", "relu")):
            if key in b and b[key] != default:
                raise ReleasedError(f"block {i} ({cls}): field '{key}' = {b[key]!r} is not supported "
                                    f"(only {default!r})")
        kw = dict(kernel=k, in_channels=_int(b, i, "in"), out_channels=_int(b, i, "out"), stride=_int(b, i, "s", 1))
        if cls == CONV:
            out.append(Block("conv", **kw))
        else:
            out.append(Block("bottleneck", bottleneck=_int(b, i, "btn"), depth=UNITS_PER_L * _int(b, i, "L"), **kw))
    s = Structure(tuple(out), in_channels=out[0].in_channels, name=name, source=source)
    try:
        return validate(s)
    except ReleasedError:
        raise
    except StructureError as e:
        raise ReleasedError(str(e)) from None


def load(path: str | Path, index: int = 0) -> Structure:
    """Read a released structure file (``.txt`` literal or exported ``.json``)."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ReleasedError(f"cannot read {p}: {e}") from None
    try:
        return from_blocks(parse(text, index), name=p.stem, source=f"released structure file {p.name}")
    except StructureError as e:
        raise ReleasedError(f"{p}: {e}") from None


def load_any(spec, index: int = 0) -> Structure:
    """A zoo name, one of our structure JSON files, or a released structure file."""
    from . import structure

    p = Path(str(spec))
    if isinstance(spec, (str, Path)) and p.is_file():
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise StructureError(f"cannot read {p}: {e}") from None
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None  # not JSON: a Python literal, i.e. a released file
        if obj is None or is_released(obj):
            return load(p, index)
    return structure.load(spec)


def caveats(s: Structure) -> list[str]:
    """Where the released code builds a (slightly) different training network from this structure."""
    notes = []
    for i, b in enumerate(s.blocks):
        if b.type == "bottleneck" and b.stride == 1 and b.in_channels == b.out_channels:
            notes.append(f"block {i}: the released code gives the first bottleneck a 1x1 projection shortcut, "
                         f"this structure an identity one (the score is unaffected; FLOPs/params differ by one 1x1 conv)")
    return notes


def to_blocks(s: Structure, form: str = "released") -> list[dict]:
    """The released block list of a structure (``form``: current or first-release class names)."""
    if form not in FORMS:
        raise ReleasedError(f"unknown released form {form!r} (known: {', '.join(FORMS)})")
    if s.shortcut != "avgpool":
        raise ReleasedError(f"shortcut {s.shortcut!r} has no released equivalent (only 'avgpool')")
    res = BOTTLENECK[0] if form == "released" else BOTTLENECK[1]
    out = []
    for i, b in enumerate(s.blocks):
        if b.type == "conv":
            out.append({"class": CONV, "in": b.in_channels, "out": b.out_channels, "s": b.stride, "k": b.kernel})
        elif b.type == "bottleneck":
            if b.depth % UNITS_PER_L:
                raise ReleasedError(f"block {i}: depth {b.depth} is not a multiple of {UNITS_PER_L}")
            out.append({"class": res, "in": b.in_channels, "out": b.out_channels, "s": b.stride, "k": b.kernel,
                        "L": b.depth // UNITS_PER_L, "btn": b.bottleneck})
        else:
            raise ReleasedError(f"block {i}: type {b.type!r} has no released equivalent (only conv, bottleneck)")
    return out


def dumps(s: Structure, form: str = "released") -> str:
    """Released-format text: ``released`` = the current dict form (valid JSON and a Python literal),
    ``released-v1`` = the first release's bare list, one block per line."""
    blocks = to_blocks(s, form)
    if form == "released-v1":
        return "[" + ",\n".join(repr(b) for b in blocks) + "]\n"
    lines = ",\n".join("  " + json.dumps(b) for b in blocks)
    return '{"best_structures": [[\n' + lines + '\n]],\n "space_arch": "CnnNet"}\n'


def is_released_file(spec) -> bool:
    """Is ``spec`` an existing file in the released format?"""
    p = Path(str(spec))
    if not p.is_file():
        return False
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return is_released(json.loads(text))
    except ValueError:
        return True
