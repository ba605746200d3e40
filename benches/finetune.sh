#!/usr/bin/env bash
# Fine-tuning quality against a careful PyTorch script (benches/finetune_reference.py), side by
# side on the same split and the same ImageNet weights: `loupe train` with its defaults (only the
# epochs, the image size, the device, the seed and the split given) and the reference, 3 seeds
# each; prints mean and spread of the best validation macro-F1 and of the whole-process seconds.
#
# Data: real product photos from the Debian package dataset-fashion-mnist (28x28 grey, 10 classes),
# 600 test-set images (60 per class, 48 train / 12 val), in two disjoint draws: `tune` (what the
# defaults were chosen on) and `holdout` (never looked at while choosing).
# Usage: benches/finetune.sh [tune|holdout] [SIZE] [EPOCHS] [extra loupe train options...]
# SEEDS="4 5 6" picks other seeds (default 1 2 3). REF=0 skips the reference (to compare Loupe's options with one another); LOUPE=path/to/loupe
# measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
DRAW=${1:-holdout}
SIZE=${2:-128}
EPOCHS=${3:-5}
shift $(($# < 3 ? $# : 3))
source benches/fashion_mnist.sh
PY=.venv/bin/python
if ! "$PY" -c 'import torchvision, efficientnet_lite_pytorch, safetensors, PIL, numpy' 2>/dev/null; then
    .venv/bin/pip install -q numpy pillow safetensors
    .venv/bin/pip install -q --no-deps torchvision==0.26.0 efficientnet-lite-pytorch==0.1.0
fi
WEIGHTS=.weights/efficientnet-lite0.safetensors
[ -f "$WEIGHTS" ] || "$PY" scripts/fetch_weights.py "$WEIGHTS"
WORK=.bench-data/fmnist-ft
if [ ! -f "$WORK/holdout/split.csv" ]; then
"$PY" - "$FMNIST" "$WORK" <<'PY'
import gzip, os, sys
import numpy as np
from PIL import Image
src, dst = sys.argv[1:3]
names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
with gzip.open(f"{src}/t10k-images-idx3-ubyte.gz") as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
with gzip.open(f"{src}/t10k-labels-idx1-ubyte.gz") as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8)
rng = np.random.default_rng(0)
draws = {"tune": [], "holdout": []}
for c in range(10):
    idx = rng.choice(np.flatnonzero(labels == c), 120, replace=False)
    draws["tune"] += [(i, c, "val" if k >= 48 else "train") for k, i in enumerate(idx[:60])]
    draws["holdout"] += [(i, c, "val" if k >= 48 else "train") for k, i in enumerate(idx[60:])]
for name, rows in draws.items():
    os.makedirs(f"{dst}/{name}/images", exist_ok=True)
    lines = ["path,label,split"]
    for i, c, side in rows:
        Image.fromarray(images[i]).save(f"{dst}/{name}/images/{i:05d}.png")
        lines.append(f"images/{i:05d}.png,{names[c]},{side}")
    open(f"{dst}/{name}/split.csv", "w").write("\n".join(lines) + "\n")
print("600 + 600 images in", dst)
PY
fi
# LOUPE: another loupe binary (its engine beside it) to measure instead of this checkout's.
if [ -z "${LOUPE:-}" ]; then
    cargo build --release -q --bins
    LOUPE=./target/release/loupe
fi
DIR=$WORK/$DRAW
OUT=$WORK/results-$DRAW.txt
: > "$OUT"
for SEED in ${SEEDS:-1 2 3}; do
    if [ "${REF:-1}" = 1 ]; then
        S=$(date +%s.%N)
        R=$("$PY" benches/finetune_reference.py "$DIR/split.csv" "$WEIGHTS" --size "$SIZE" --epochs "$EPOCHS" --seed "$SEED")
        E=$(date +%s.%N)
        echo "reference $SEED $(echo "$E - $S" | bc) $R" | tee -a "$OUT"
    fi
    rm -rf "$DIR/.loupe"
    S=$(date +%s.%N)
    "$LOUPE" train "$DIR" --csv split.csv --split-column split --epochs "$EPOCHS" \
        --img-size "$SIZE" --device cpu --seed "$SEED" "$@" > "$WORK/loupe.log" 2>&1
    E=$(date +%s.%N)
    R=$("$PY" - "$DIR/.loupe" <<'PY'
import glob, json, sys
m = [json.loads(l) for f in glob.glob(sys.argv[1] + "/**/runs/*/metrics.jsonl", recursive=True) for l in open(f)]
e = [x["metrics"] for x in m if x["kind"] == "epoch"]
b = max(e, key=lambda x: x["macro_f1"])
print(json.dumps({"macro_f1": b["macro_f1"], "accuracy": b["accuracy"], "epoch": b["epoch"]}))
PY
)
    echo "loupe $SEED $(echo "$E - $S" | bc) $R" | tee -a "$OUT"
done
"$PY" - "$OUT" "$DRAW" "$SIZE" "$EPOCHS" "$*" <<'PY'
import json, statistics as st, sys
rows = [l.split(" ", 3) for l in open(sys.argv[1]) if l.strip()]
seeds = sorted({int(l.split(" ")[1]) for l in open(sys.argv[1]) if l.strip()})
print(f"\n{sys.argv[2]} draw, {sys.argv[3]} px, {sys.argv[4]} epochs, seeds {seeds}, loupe options: {sys.argv[5] or 'defaults'}")
for tool in ("reference", "loupe"):
    r = [(float(s), json.loads(j)) for t, _, s, j in rows if t == tool]
    if not r:
        continue
    f1 = [j["macro_f1"] for _, j in r]
    acc = [j["accuracy"] for _, j in r]
    secs = [s for s, _ in r]
    print(f"  {tool:9}  macro-F1 {st.mean(f1):.3f} +- {st.pstdev(f1):.3f}  accuracy {st.mean(acc):.3f}"
          f"  seconds {st.mean(secs):.1f} +- {st.pstdev(secs):.1f}")
PY
