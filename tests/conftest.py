import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "lib") not in sys.path:  # the package is installed editable by scripts/setup.sh; this helps bare runs
    sys.path.insert(0, str(ROOT / "lib"))
os.environ.setdefault("MPLBACKEND", "Agg")
