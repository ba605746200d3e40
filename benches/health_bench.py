"""Planted picture problems in real photos, scored for `loupe health` and cleanvision.

build SOURCES OUT: every real photograph found under SOURCES (one per wallpaper: its widest
    version up to 1920 px), scaled so the long side is 640 px, saved as JPEG under OUT/photos
    or OUT/wallpapers (the label: where it came from); then planted copies of some of them, one
    kind per picture, listed in OUT/planted.csv (path,kind,source).
score OUT LOUPE_CSV SECONDS_LOUPE SECONDS_CLEANVISION: runs nothing; reads OUT/cleanvision.csv
    (written by `cleanvision`) and Loupe's --out, prints found per kind and untouched flagged.
cleanvision OUT: runs cleanvision's Imagelab with its defaults on OUT, writes OUT/cleanvision.csv
    (path, issue) for every flagged image.
"""

import csv
import os
import shutil
import sys

from PIL import Image, ImageFilter

KINDS = [
    # kind, what it counts as found by Loupe, by cleanvision
    ("exact-copy", {"exact-duplicate"}, {"exact_duplicates"}),
    ("resized-copy", {"near-duplicate", "exact-duplicate"}, {"near_duplicates"}),
    ("crop", {"near-duplicate"}, {"near_duplicates"}),
    ("copy-other-class", {"near-duplicate", "label-conflict"}, {"near_duplicates"}),
    ("blur", {"blurry"}, {"blurry"}),
    ("dark", {"dark"}, {"dark"}),
    ("washed-out", {"light"}, {"light"}),
    ("extreme-aspect", {"odd-aspect"}, {"odd_aspect_ratio"}),
    ("greyscale", {"grayscale"}, {"grayscale"}),
]
DUPLICATE_CHECKS = {"exact-duplicate", "near-duplicate", "label-conflict", "exact_duplicates", "near_duplicates"}
SIDE = 640


# Wallpapers that are photographs (the packages also hold artwork, which is not what a photo
# dataset looks like: smooth gradients read as blur there, rightly).
PHOTO_WALLPAPERS = {
    "BytheWater", "DarkestHour", "EveningGlow", "FallenLeaf", "Kite", "OneStandsOut", "Path",
    "summer_1am",
}


def sources(root):
    """(label, path) of every distinct real photograph under root."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        pics = sorted(f for f in files if f.lower().endswith((".jpg", ".jpeg", ".png")))
        if not pics:
            continue
        parts = dirpath.split(os.sep)
        if "wallpapers" in parts:
            # Plasma: a wallpaper in many resolutions is one picture; the widest up to 1920.
            name = parts[parts.index("wallpapers") + 1]
            if name not in PHOTO_WALLPAPERS or parts[-1] != "images":
                continue
            width = lambda f: int(f.split("x")[0]) if f.split("x")[0].isdigit() else 0
            sized = [f for f in pics if 0 < width(f) <= 1920]
            found.append(("wallpapers", os.path.join(dirpath, max(sized, key=width))))
        elif "backgrounds" in parts:
            if parts[-1] == "nature":  # MATE's photographs
                found.extend(("wallpapers", os.path.join(dirpath, f)) for f in pics)
        else:
            found.extend(("photos", os.path.join(dirpath, f)) for f in pics)
    return found


def scaled(img):
    img = img.convert("RGB")
    w, h = img.size
    k = SIDE / max(w, h)
    return img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BICUBIC)


def build(src_root, out):
    if os.path.exists(out):
        shutil.rmtree(out)
    originals = []
    for label, path in sources(src_root):
        try:
            img = scaled(Image.open(path))
        except Exception as e:  # a source that PIL cannot read is not a photo to plant into
            print(f"skipped {path}: {e}", file=sys.stderr)
            continue
        # Mostly colour pictures: a greyscale original would be a true greyscale finding.
        if img.convert("HSV").getextrema()[1][1] < 40:
            continue
        os.makedirs(f"{out}/{label}", exist_ok=True)
        rel = f"{label}/{len(originals):03d}.jpg"
        img.save(f"{out}/{rel}", quality=92)
        originals.append((rel, label))
    rows = []
    per_kind = 8  # 72 plants: some pictures are the source of two
    for k, (kind, _, _) in enumerate(KINDS):
        for j in range(per_kind):
            rel, label = originals[(k * per_kind + j) % len(originals)]
            img = Image.open(f"{out}/{rel}")
            other = "photos" if label == "wallpapers" else "wallpapers"
            dst = f"{label}/{kind}-{j:02d}.jpg"
            w, h = img.size
            if kind == "exact-copy":
                shutil.copy(f"{out}/{rel}", f"{out}/{dst}")
            elif kind == "resized-copy":
                img.resize((w // 2, h // 2), Image.BILINEAR).save(f"{out}/{dst}", quality=70)
            elif kind == "crop":
                dx, dy = w // 12, h // 12
                img.crop((dx, dy, w - dx, h - dy)).save(f"{out}/{dst}", quality=90)
            elif kind == "copy-other-class":
                dst = f"{other}/{kind}-{j:02d}.jpg"
                img.resize((w * 3 // 4, h * 3 // 4), Image.BILINEAR).save(f"{out}/{dst}", quality=85)
            elif kind == "blur":
                img.filter(ImageFilter.GaussianBlur(4)).save(f"{out}/{dst}", quality=92)
            elif kind == "dark":
                img.point(lambda v: v * 0.15).save(f"{out}/{dst}", quality=92)
            elif kind == "washed-out":
                img.point(lambda v: 190 + v * 0.25).save(f"{out}/{dst}", quality=92)
            elif kind == "extreme-aspect":
                img.resize((w * 2, max(1, h // 2)), Image.BILINEAR).save(f"{out}/{dst}", quality=92)
            elif kind == "greyscale":
                img.convert("L").convert("RGB").save(f"{out}/{dst}", quality=92)
            rows.append((dst, kind, rel))
    with open(f"{out}/planted.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "kind", "source"])
        w.writerows(rows)
    with open(f"{out}/originals.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(originals)
    print(f"{len(originals)} real pictures, {len(rows)} planted ({per_kind} per kind)")


def cleanvision(out):
    from cleanvision import Imagelab

    lab = Imagelab(data_path=out)
    lab.find_issues(verbose=False)
    issues = lab.issues
    cols = [c for c in issues.columns if c.startswith("is_") and c.endswith("_issue")]
    groups = {}
    for kind in ("exact_duplicates", "near_duplicates"):
        for g, members in enumerate(lab.info.get(kind, {}).get("sets", [])):
            for m in members:
                groups[(os.path.relpath(m, out), kind)] = f"{kind[0]}{g}"
    with open(f"{out}/cleanvision.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "check", "group"])
        for path, row in issues.iterrows():
            rel = os.path.relpath(path, out)
            for c in cols:
                if row[c]:
                    w.writerow([rel, c[3:-6], groups.get((rel, c[3:-6]), "")])


def mixed_groups(csv_path, planted, check):
    """Files in near-duplicate groups that join different photos (a photo and its planted
    copies are one family)."""
    family = {r["path"]: r["source"] for r in planted}
    groups = {}
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            if r["check"] == check and r.get("group"):
                groups.setdefault(r["group"], set()).add(r["path"])
    return sum(len(g) for g in groups.values() if len({family.get(p, p) for p in g}) > 1)


def flagged(csv_path):
    by_path = {}
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            by_path.setdefault(r["path"], set()).add(r["check"])
    return by_path


def score(out, loupe_csv, t_loupe, t_cv):
    planted = list(csv.DictReader(open(f"{out}/planted.csv")))
    originals = [r["path"] for r in csv.DictReader(open(f"{out}/originals.csv"))]
    # Every plant is a copy of its source, so a source is rightly a (near-)duplicate.
    dup_sources = {r["source"] for r in planted}
    tools = {"loupe health": flagged(loupe_csv), "cleanvision 0.3.6": flagged(f"{out}/cleanvision.csv")}
    print(f"| kind (planted) | {' | '.join(tools)} |")
    print("|---|" + "---|" * len(tools))
    for kind, loupe_checks, cv_checks in KINDS:
        rows = [r for r in planted if r["kind"] == kind]
        cells = []
        for (name, flags), checks in zip(tools.items(), (loupe_checks, cv_checks)):
            found = sum(1 for r in rows if flags.get(r["path"], set()) & checks)
            cells.append(f"{found}/{len(rows)}")
        print(f"| {kind} | {' | '.join(cells)} |")
    cells = []
    for name, flags in tools.items():
        bad = []
        for p in originals:
            f = set(flags.get(p, set()))
            if p in dup_sources:
                f -= DUPLICATE_CHECKS
            # Outliers are a ranked list (Loupe lists the most isolated 1%), counted apart.
            f.discard("outlier")
            if f:
                bad.append(f"{p}:{'+'.join(sorted(f))}")
        cells.append(f"{len(bad)}/{len(originals)}")
        print(f"{name}: untouched flagged: {', '.join(bad) or 'none'}", file=sys.stderr)
    print(f"| untouched originals flagged | {' | '.join(cells)} |")
    listed = [sum(1 for p in originals if "outlier" in flags.get(p, set())) for flags in tools.values()]
    print(f"| untouched originals listed as outliers | {listed[0]} | (no such check) |")
    mixed = [
        mixed_groups(loupe_csv, planted, "near-duplicate"),
        mixed_groups(f"{out}/cleanvision.csv", planted, "near_duplicates"),
    ]
    print(f"| files in near-duplicate groups that join different photos | {mixed[0]} | {mixed[1]} |")
    print(f"| time (whole process) | {float(t_loupe):.1f} s | {float(t_cv):.1f} s |")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "build":
        build(sys.argv[2], sys.argv[3])
    elif cmd == "cleanvision":
        cleanvision(sys.argv[2])
    elif cmd == "score":
        score(*sys.argv[2:6])
