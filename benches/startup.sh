#!/usr/bin/env bash
# What a user waits for, as whole processes (the engine-process issue): `loupe --version`,
# `loupe stats` on an empty folder and on 100,000 images (against the notebook baseline,
# os.walk + PIL header, run in the same script), and the window on the sample data: time from
# exec to the first frame and resident memory before any run (under Xvfb, Mesa's lavapipe).
#
# Usage: benches/startup.sh   (after `cargo build --release --bins`; as root it installs
# hyperfine, Xvfb and time from Debian, and Pillow into .bench-venv for the baseline)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/loupe
DATA=target/bench-data/scan100k
[ -x "$BIN" ] && [ -x target/release/loupe-engine ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
for tool in hyperfine Xvfb /usr/bin/time; do
  command -v "$tool" >/dev/null || apt-get install -y -qq hyperfine xvfb time >/dev/null
done
[ -d "$DATA" ] || cargo bench --bench scan >/dev/null   # generates the 100,000 PNGs
[ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv
.bench-venv/bin/python -c 'import PIL' 2>/dev/null || .bench-venv/bin/pip install -q pillow==13.0.0

echo "## $(date -u +%F) on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1; }
empty=$(mktemp -d)

echo; echo "### loupe --version, loupe stats on an empty folder"
table=$(mktemp)
hyperfine -N --warmup 3 --runs 30 "$BIN --version" "$BIN stats $empty" -i --export-markdown "$table" >/dev/null 2>&1
cat "$table"
echo "peak RSS: --version $(( $(rss $BIN --version) / 1024 )) MB, stats on an empty folder $(( $(rss $BIN stats "$empty" || true) / 1024 )) MB"

echo; echo "### loupe stats on 100,000 PNGs (warm page cache), whole process, vs the notebook baseline"
hyperfine -N --warmup 2 --runs 10 "$BIN stats $DATA --json" --export-markdown "$table" >/dev/null 2>&1
cat "$table"
echo "peak RSS: $(( $(rss $BIN stats $DATA --json) / 1024 )) MB"
.bench-venv/bin/python benches/scan_baseline.py "$DATA" | grep warm

echo; echo "### The window on sample_data: first frame after exec, and resident memory before any run"
display=:93
Xvfb $display -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null; rm -rf "$empty" "$table"' EXIT
sleep 1
copy=$(mktemp -d)
cp -r sample_data "$copy/"
for i in 1 2 3 4 5; do
  log=$(mktemp)
  DISPLAY=$display LOUPE_REPORT_FIRST_FRAME=1 LOUPE_CACHE_DIR="$copy/cache" "$BIN" "$copy/sample_data" 2>"$log" &
  pid=$!
  sleep 4   # the dataset is open and the thumbnails on screen are drawn by now
  rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  echo "run $i: $(grep -o 'first frame [0-9]* ms after exec' "$log"), RSS $(( rss_kb / 1024 )) MB"
  rm -f "$log"
done
rm -rf "$copy"
