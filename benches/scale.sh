#!/usr/bin/env bash
# `loupe issues` at the size of the competition data: 18,900 JPEG photos of 384x512 in 2,700
# groups of 7 (a person), labelled mask x gender x age (18 classes), generated once by
# benches/scale_data.py (synthetic faces: the cost of decoding and embedding, not the quality).
# Prints the whole command's wall time and peak memory, first with no embedding cache, then
# again with the cache (a second search after relabelling).
# Usage: benches/scale.sh [extra loupe issues options...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.bench-data
VENV=.bench-venv
WORK=$DATA/scale
LOUPE=${LOUPE:-./target/release/loupe}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import PIL, numpy' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cleanlab==2.9.*" pillow numpy
fi
if [ ! -f "$WORK/labels.csv" ]; then
    "$VENV/bin/python" benches/scale_data.py "$WORK"
fi
[ -n "${LOUPE_PREBUILT:-}" ] || cargo build --release -q
rm -rf "$WORK/.loupe"
COLS=(--csv labels.csv --label-col mask,gender,age --group-col id --device cpu)
for pass in "no cache" "cached embeddings"; do
    /usr/bin/time -f "%e s wall, %M KiB peak" -o "$WORK/time.txt" \
        "$LOUPE" issues "$WORK" "${COLS[@]}" "$@" --out "$WORK/issues.csv" > "$WORK/issues.log"
    echo "$pass: $(cat "$WORK/time.txt"), $(awk -F, '$7 == 1' "$WORK/issues.csv" | wc -l) flagged rows"
done
