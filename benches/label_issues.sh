#!/usr/bin/env bash
# Label-issue finding quality on planted noise: 3,000 Fashion-MNIST training images (300 per
# class), 10% of each class's labels moved to its most confusable class, then
# `loupe issues` (5 folds, defaults); prints precision, recall and F1 of the flagged images
# against the planted ones, and the time.
# Usage: benches/label_issues.sh [IMG_SIZE] [extra loupe issues options...]
# Fetches the Debian package dataset-fashion-mnist once (benches/fashion_mnist.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-128}
shift || true
DATA=.bench-data
VENV=.bench-venv
mkdir -p "$DATA"
source benches/fashion_mnist.sh
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import PIL, numpy' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cleanlab==2.9.*" psutil pillow
fi
# The noisy set is deterministic: built once, kept; its earlier searches are removed so each
# run measures the whole pipeline (embeddings included).
WORK=$DATA/fmnist-noisy
if [ ! -f "$WORK/planted.csv" ]; then
"$VENV/bin/python" - "$DATA/fashion-mnist" "$WORK/noisy" "$WORK/planted.csv" <<'PY'
import gzip, os, sys
import numpy as np
from PIL import Image
src, dst, planted_csv = sys.argv[1:4]
names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
# Each class's most confusable class (Fashion-MNIST's usual confusion matrix).
confusable = {0: 6, 1: 3, 2: 4, 3: 0, 4: 2, 5: 7, 6: 0, 7: 9, 8: 6, 9: 7}
with gzip.open(f"{src}/train-images-idx3-ubyte.gz") as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
with gzip.open(f"{src}/train-labels-idx1-ubyte.gz") as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8)
rng = np.random.default_rng(0)
rows = []
for c in range(10):
    idx = rng.choice(np.flatnonzero(labels == c), 300, replace=False)
    moved = set(rng.choice(idx, 30, replace=False).tolist())
    for i in idx:
        given = confusable[c] if i in moved else c
        rel = f"{names[given]}/{i:05d}.png"
        os.makedirs(f"{dst}/{names[given]}", exist_ok=True)
        Image.fromarray(images[i]).save(f"{dst}/{rel}")
        if i in moved:
            rows.append(f"{rel},{names[c]},{names[given]}")
open(planted_csv, "w").write("path,true,given\n" + "\n".join(rows) + "\n")
print(f"3000 images, {len(rows)} planted label errors")
PY
fi
rm -rf "$WORK/noisy/.loupe"
cargo build --release -q
START=$(date +%s.%N)
./target/release/loupe issues "$WORK/noisy" --img-size "$SIZE" --device cpu --out "$WORK/issues.csv" "$@" > "$WORK/log.txt"
END=$(date +%s.%N)
"$VENV/bin/python" - "$WORK/planted.csv" "$WORK/issues.csv" "$START" "$END" "$SIZE" <<'PY'
import csv, sys
planted = {r["path"] for r in csv.DictReader(open(sys.argv[1]))}
flagged = {r["path"] for r in csv.DictReader(open(sys.argv[2])) if r["flagged"] == "1"}
tp = len(planted & flagged)
p = tp / max(len(flagged), 1)
r = tp / len(planted)
f1 = 2 * p * r / max(p + r, 1e-9)
print(f"img-size {sys.argv[5]}: flagged {len(flagged)}, planted {len(planted)}, found {tp}: precision {p:.3f}, recall {r:.3f}, F1 {f1:.3f}; {float(sys.argv[4]) - float(sys.argv[3]):.1f} s (loupe issues, first run: embeddings not cached)")
PY
