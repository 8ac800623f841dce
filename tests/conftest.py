import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "lib") not in sys.path:  # the package is installed editable by scripts/setup.sh; this helps bare runs
    sys.path.insert(0, str(ROOT / "lib"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def torch_conv_macs():
    """A function ``(net, x) -> MACs`` of the convolutions of ``net`` on ``x`` as torch's own FLOP counter
    (``FlopCounterMode``, which counts 2 FLOPs per multiply-add) measures them: the independent check of
    :func:`maedet.flops.count`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def measure(net, x) -> int:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(x)
        flops = sum(v for k, v in fc.get_flop_counts()["Global"].items() if "convolution" in str(k))
        return flops // 2

    return measure
