"""Build sample_data/ (ImageFolder layout) from the Google Noto emoji of npm emoji-datasource-google.

Usage: python3 scripts/build_sample_data.py PACKAGE_DIR OUT_DIR
PACKAGE_DIR is the unpacked npm tarball (`npm pack emoji-datasource-google@16.0.0 && tar xzf ...`),
i.e. the folder holding emoji.json and img/google/64/.
Base emoji only (skin-tone variants skipped), the 'Component' category (skin tones, hair) skipped,
one folder per category, files named after the emoji's short name."""
import json, os, re, shutil, sys

pkg, out = sys.argv[1], sys.argv[2]
emoji = json.load(open(os.path.join(pkg, "emoji.json"), encoding="utf-8"))
counts = {}
for e in emoji:
    if e["category"] == "Component" or not e.get("has_img_google", True):
        continue
    cat = re.sub(r"[^a-z]+", "_", e["category"].lower()).strip("_")
    src = os.path.join(pkg, "img", "google", "64", e["image"])
    if not os.path.exists(src):
        continue
    os.makedirs(os.path.join(out, cat), exist_ok=True)
    shutil.copyfile(src, os.path.join(out, cat, e["short_name"] + ".png"))
    counts[cat] = counts.get(cat, 0) + 1
for k in sorted(counts):
    print(f"{k:18} {counts[k]}")
print("total", sum(counts.values()))
