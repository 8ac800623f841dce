"""``maedet config``: a complete mmdetection config for any structure and head.

The written file is the bundled COCO config of the head (``lib/maedet/configs/``: the paper's protocol,
``_base_ = 'mmdet::...'`` + ``custom_imports``) with the backbone's structure and the neck's input channels
replaced. The structure is embedded as a dict, not referenced by path: the config then stands alone (it
records the exact architecture trained, does not depend on the directory the trainer runs from, and works
for released-format input, which ``MAEDetBackbone`` does not read by path).
"""
from __future__ import annotations

import re
from pathlib import Path

from .structure import Structure

CONFIGS = Path(__file__).parent / "configs"
HEAD_FILES = {
    "retinanet": "retinanet_maedet-m_fpn_3x_coco.py",
    "fcos": "fcos_maedet-m_fpn_3x_coco.py",
    "gfl": "gfl_maedet-m_fpn_3x_coco.py",
    "yolof": "yolof_maedet-m_c5_3x_coco.py",
    "mask-rcnn": "mask-rcnn_maedet-m_fpn_3x_coco.py",
}


def _sub_once(pattern: str, repl, text: str, what: str) -> str:
    new, n = re.subn(pattern, repl, text, count=1)
    if n != 1:
        raise ValueError(f"bundled config: cannot find the {what} to replace")
    return new


def config_text(s: Structure, head: str, label: str = "") -> str:
    """The config file's text for structure ``s`` and ``head`` (one of :data:`HEAD_FILES`)."""
    from .mmdet_backbone import neck_in_channels

    head = head.replace("_", "-")
    if head not in HEAD_FILES:
        raise ValueError(f"--head must be one of {', '.join(HEAD_FILES)}, got {head!r}")
    text = (CONFIGS / HEAD_FILES[head]).read_text()
    m = re.search(r"out_indices=\(([\d,\s]*)\)", text)
    out_idx = tuple(int(v) for v in m.group(1).split(",") if v.strip())
    ch = neck_in_channels(s, out_idx)
    d = s.to_dict()
    blocks = ",\n".join(f"                {b!r}" for b in d.pop("blocks"))
    struct = "dict(\n" + "".join(f"            {k}={v!r},\n" for k, v in d.items()) + \
             f"            blocks=[\n{blocks}]),"
    text = _sub_once(r"structure='maedet-m',[^\n]*", lambda _: f"structure={struct}", text, "backbone structure")
    ch_text = str(ch[0]) if head == "yolof" else str(ch)
    text = _sub_once(r"(neck=dict\(in_channels=)(\[[^\]]*\]|\d+)([^\n]*?\)\))[^\n]*", lambda m: m.group(1) + ch_text + m.group(3) + f"  # neck_in_channels(structure, {out_idx})",
                    text, "neck in_channels")
    header = (f"# Written by `maedet config --head {head}` for the backbone {label or s.name or s.digest()}: the bundled\n"
              f"# lib/maedet/configs/{HEAD_FILES[head]} with this structure and its neck channels.\n")
    return header + text


def write(s: Structure, head: str, out: str | Path, label: str = "") -> Path:
    """Write the config atomically."""
    text = config_text(s, head, label)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out
