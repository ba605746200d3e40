#!/usr/bin/env bash
# Confident learning, Loupe vs cleanlab 2.9, on the same 1,000,000 x 100 float64 input
# (numpy's default dtype; cleanlab computes in it, and so does Loupe).
# Usage: benches/confident_compare.sh [N] [K]
# Installs cleanlab 2.9 into .bench-venv the first time (from the package registry).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
K=${2:-100}
VENV=.bench-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import cleanlab' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cleanlab==2.9.*" psutil
fi
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$VENV/bin/python" -W ignore - "$DIR" "$N" "$K" <<'PY'
import sys, time
import numpy as np
import cleanlab
from cleanlab.filter import find_label_issues
d, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
true = rng.integers(0, k, n)
labels = true.copy()
flip = rng.random(n) < 0.1
labels[flip] = rng.integers(0, k, flip.sum())
logits = rng.normal(0, 1, (n, k))
logits[np.arange(n), true] += 3.0
p = np.exp(logits - logits.max(1, keepdims=True))
p = p / p.sum(1, keepdims=True)
np.save(f"{d}/labels.npy", labels.astype(np.int64))
np.save(f"{d}/probs.npy", p)
print(f"cleanlab {cleanlab.__version__}: N = {n}, K = {k}, float64")
for method in ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"]:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        mask = find_label_issues(labels, p, filter_by=method)
        best = min(best, time.perf_counter() - t)
    print(f"cleanlab {method}: {best:.3f} s, {mask.sum()} flagged")
    if method == "prune_by_noise_rate":
        mask.astype(np.uint8).tofile(f"{d}/cleanlab_mask.bin")
# Where rounding meets exact ties (common: equal counts in a row of the confident joint scale to
# equal fractions), cleanlab's choice follows numpy's unstable, CPU-dispatched argsort. With every
# argsort made stable, cleanlab's algorithm must give exactly Loupe's flags.
_argsort = np.argsort
np.argsort = lambda a, *args, **kw: _argsort(a, *args, **{**kw, "kind": "stable"})
find_label_issues(labels, p, filter_by="prune_by_noise_rate", n_jobs=1).astype(np.uint8).tofile(f"{d}/cleanlab_stable_mask.bin")
PY
cargo bench -q --bench confident -- "$DIR/labels.npy" "$DIR/probs.npy" "$DIR/loupe_mask.bin"
python3 - "$DIR" <<'PY'
import sys
d = sys.argv[1]
a = open(f"{d}/cleanlab_mask.bin", "rb").read()
b = open(f"{d}/loupe_mask.bin", "rb").read()
c = open(f"{d}/cleanlab_stable_mask.bin", "rb").read()
diff = sum(x != y for x, y in zip(a, b))
stable = sum(x != y for x, y in zip(c, b))
print(f"default method: {sum(a)} flagged by cleanlab, {sum(b)} by loupe, {diff} examples differ (rounding ties)")
print(f"cleanlab with stable argsort: {sum(c)} flagged, {stable} examples differ from loupe")
PY
