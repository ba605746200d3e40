#!/usr/bin/env bash
# Picture health on real photos with planted problems, `loupe health` beside cleanvision 0.3.6
# (its defaults), on the same files. The real pictures come from registry packages, fetched
# once into .bench-data/health-src:
#   PyPI foolbox==3.3.4 (20 ImageNet validation photos), PyPI scikit-image==0.26.0 (its sample
#   photos), Debian plasma-workspace-wallpapers and mate-backgrounds (only their photographs,
#   listed in health_bench.py; one picture per wallpaper).
# benches/health_bench.py scales them to 640 px, keeps the colour ones, plants one problem per
# picture into copies of them (exact copy, resized and re-encoded copy, crop, copy filed under
# the other label, blur, darkening, washing out, extreme aspect, greyscale) and scores per kind
# how many each tool finds, and how many untouched pictures each flags.
# Usage: benches/health.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.bench-data
VENV=.bench-venv
SRC=$DATA/health-src
WORK=$DATA/health
LOUPE=${LOUPE:-./target/release/loupe}
if ! "$VENV/bin/python" -c 'import PIL, cleanvision' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "cleanvision==0.3.6" pillow
fi
if [ ! -f "$SRC/.complete" ]; then
    rm -rf "$SRC" && mkdir -p "$SRC/dl"
    (cd "$SRC/dl" && apt-get download plasma-workspace-wallpapers mate-backgrounds >/dev/null 2>&1)
    for deb in "$SRC"/dl/*.deb; do dpkg-deb -x "$deb" "$SRC/debian"; done
    "$VENV/bin/pip" download -q --no-deps -d "$SRC/dl" foolbox==3.3.4 scikit-image==0.26.0
    mkdir -p "$SRC/pypi/foolbox" "$SRC/pypi/skimage"
    (cd "$SRC/pypi/foolbox" && unzip -q -j -o ../../dl/foolbox-3.3.4-*.whl 'foolbox/data/imagenet_*')
    (cd "$SRC/pypi/skimage" && unzip -q -j -o ../../dl/scikit_image-0.26.0-*.whl \
        skimage/data/astronaut.png skimage/data/chelsea.png skimage/data/coffee.png \
        skimage/data/rocket.jpg skimage/data/motorcycle_left.png skimage/data/retina.jpg \
        skimage/data/hubble_deep_field.jpg skimage/data/ihc.png)
    rm -rf "$SRC/dl"
    touch "$SRC/.complete"
fi
"$VENV/bin/python" benches/health_bench.py build "$SRC" "$WORK"
[ -n "${LOUPE_PREBUILT:-}" ] || cargo build --release -q
START=$(date +%s.%N)
"$LOUPE" health "$WORK" --out "$DATA/health-loupe.csv" > "$DATA/health-loupe.txt"
T_LOUPE=$(echo "$(date +%s.%N) - $START" | bc)
START=$(date +%s.%N)
"$VENV/bin/python" benches/health_bench.py cleanvision "$WORK" > /dev/null 2>&1
T_CV=$(echo "$(date +%s.%N) - $START" | bc)
"$VENV/bin/python" benches/health_bench.py score "$WORK" "$DATA/health-loupe.csv" "$T_LOUPE" "$T_CV"
