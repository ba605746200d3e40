#!/usr/bin/env bash
# Builds assets/fonts/loupe-hangul-fallback.ttf: NanumGothic (Debian fonts-nanum, OFL-1.1) cut down
# to the Hangul blocks and renamed, as the OFL asks of modified versions of a font with a Reserved
# Font Name. Needs apt-get and a Python with fonttools (e.g. .venv/bin/pip install fonttools).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download fonts-nanum >/dev/null && dpkg-deb -x fonts-nanum_*.deb x)
"$PY" -m fontTools.subset "$tmp/x/usr/share/fonts/truetype/nanum/NanumGothic.ttf" \
  --unicodes="U+1100-11FF,U+3130-318F,U+AC00-D7A3" --no-hinting --desubroutinize \
  --output-file="$tmp/subset.ttf"
"$PY" - "$tmp/subset.ttf" assets/fonts/loupe-hangul-fallback.ttf <<'PYEOF'
import sys
from fontTools.ttLib import TTFont
f = TTFont(sys.argv[1])
for rec in f["name"].names:
    if rec.nameID in (1, 3, 4, 6, 16, 17):
        text = {1: "Loupe Hangul Fallback", 3: "Loupe Hangul Fallback Regular", 4: "Loupe Hangul Fallback Regular",
                6: "LoupeHangulFallback-Regular", 16: "Loupe Hangul Fallback", 17: "Regular"}[rec.nameID]
        rec.string = text
f.save(sys.argv[2])
PYEOF
cp "$tmp/x/usr/share/doc/fonts-nanum/copyright" assets/fonts/fonts-nanum-copyright.txt
rm -rf "$tmp"
ls -la assets/fonts/loupe-hangul-fallback.ttf
