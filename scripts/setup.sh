#!/usr/bin/env bash
# Set up the project environment in .venv (idempotent; a second run takes seconds).
#
#   torch 2.14.1 + torchvision 0.29.1   (pip; a CUDA build that also runs on CPU)
#   mmcv 2.1.0 with ops                  (built from the sdist ONCE per machine into a wheel cache,
#                                          $MAEDET_WHEEL_CACHE, default ~/.cache/maedet/wheels)
#   everything in requirements.txt, every transitive dependency pinned by constraints.txt (a freeze of a
#   working environment), then the project package `maedet` (lib/) in editable mode.
#
# Needs only the package registries (PyPI); no other network access.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=${MAEDET_VENV:-$ROOT/.venv}
CACHE=${MAEDET_WHEEL_CACHE:-$HOME/.cache/maedet/wheels}
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
MMCV_VERSION=2.1.0

log() { printf '[setup] %s\n' "$*" >&2; }

# The stamp records everything that decides the environment; if unchanged, nothing to do.
stamp_src=$(cat requirements.txt constraints.txt lib/pyproject.toml scripts/setup.sh; echo "$TORCH_PINS $MMCV_VERSION")
stamp=$(printf '%s' "$stamp_src" | sha256sum | cut -c1-16)
if [ -f "$VENV/.maedet-setup" ] && [ "$(cat "$VENV/.maedet-setup")" = "$stamp" ]; then
  log "environment up to date ($VENV)"
  exit 0
fi

"$PYTHON" - <<'PY' || { echo "[setup] error: Python 3.10-3.12 is required" >&2; exit 2; }
import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
PY

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
C=(-c "$ROOT/constraints.txt")
"${PIP[@]}" install -q "pip==24.3.1" "setuptools>=77.0.3,<81" wheel "ninja==1.11.1.3"

log "installing $TORCH_PINS"
"${PIP[@]}" install -q "${C[@]}" $TORCH_PINS "numpy==1.26.4"

mkdir -p "$CACHE"
mmcv_whl=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$mmcv_whl" ]; then
  log "building mmcv $MMCV_VERSION with ops from source (once per machine; 10-25 minutes on 2 cores)"
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$build"
  tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
  # torch 2.14's headers need C++20; mmcv 2.1.0 asks for C++17.
  sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV_VERSION/setup.py"
  (cd "$build/mmcv-$MMCV_VERSION" &&
   MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
   "${PIP[@]}" wheel -q --no-build-isolation --no-deps -w "$build/dist" .)
  cp "$build"/dist/mmcv-$MMCV_VERSION-*.whl "$CACHE/"
  mmcv_whl=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl | head -n1)
fi
log "installing the remaining pinned packages"
# opencv headless first, so that mmcv/mmengine do not pull the GUI build.
"${PIP[@]}" install -q "${C[@]}" "opencv-python-headless==4.10.0.84" "numpy==1.26.4"
"${PIP[@]}" install -q "${C[@]}" "$mmcv_whl" -r requirements.txt
"${PIP[@]}" install -q --no-deps -e lib
"$VENV/bin/python" -m ipykernel install --sys-prefix --name maedet --display-name "MAE-DET (.venv)" >/dev/null

"$VENV/bin/python" - <<'PY'
import torch, torchvision, mmcv, mmengine, mmdet
from mmcv.ops import nms  # the compiled ops must load
import maedet
print(f"[setup] torch {torch.__version__}, torchvision {torchvision.__version__}, mmcv {mmcv.__version__}, "
      f"mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, maedet {maedet.__version__}")
PY
echo "$stamp" > "$VENV/.maedet-setup"
log "done"
