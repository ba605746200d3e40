#!/usr/bin/env bash
# A 5-fold experiment on the bundled sample data (1,906 emoji, 9 classes) on the CPU: locally
# (one fold at a time) and through a Ray head started here (folds as parallel jobs), each timed
# as a whole `loupe train --folds 5` process; and a single run of the same settings, whose
# validation macro-F1 the experiment's out-of-fold macro-F1 is set against.
#
# Usage: benches/kfold.sh [EPOCHS] [IMG_SIZE]   (defaults 3 and 96). Needs `make test` first
# (release binaries, .ray-venv, .weights). Writes its runs under target/bench-kfold/.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
size=${2:-96}
out=target/bench-kfold
rm -rf "$out" && mkdir -p "$out"
cargo build --release --bins -q
loupe=$PWD/target/release/loupe
common=(sample_data --model efficientnet-lite0 --epochs "$epochs" --img-size "$size" --device cpu --seed 1)

timed() { # label, then the command; prints the wall time and the command's last lines
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$out/$label.log" 2>&1
  t1=$(date +%s.%N)
  printf '%s: %.1f s\n' "$label" "$(echo "$t1 - $t0" | bc)"
  grep -E "out of fold|best validation macro-F1|^done" "$out/$label.log" | tail -n 2
}

timed single "$loupe" train "${common[@]}" --runs "$out/single"
timed local "$loupe" train "${common[@]}" --folds 5 --runs "$out/local"

ray=.ray-venv/bin/ray
[ -x "$ray" ] || { echo "no .ray-venv: run make test first"; exit 1; }
tmp=$(mktemp -d /tmp/lrayXXXX)
"$ray" start --head --port 6399 --dashboard-host 127.0.0.1 --dashboard-port 8299 --num-cpus 2 \
  --include-dashboard true --disable-usage-stats --temp-dir "$tmp" > "$out/ray-start.log" 2>&1
trap '"$ray" stop --force > /dev/null 2>&1; rm -rf "$tmp"' EXIT
until curl -sf http://127.0.0.1:8299/api/version > /dev/null; do sleep 1; done
timed ray "$loupe" train "${common[@]}" --folds 5 --runs "$out/ray" \
  --backend ray --ray-address http://127.0.0.1:8299 --ray-command "$loupe {args}" --ray-cpus 1
