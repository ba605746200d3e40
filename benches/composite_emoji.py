"""A composite-label dataset from real pictures, with planted errors of both kinds, for
benches/composite.sh.

Build:  composite_emoji.py build PACKAGE_DIR OUT_DIR
  The Google Noto emoji with skin tones (npm emoji-datasource-google@16.0.0): 316 people and
  hands, each drawn in 6 tones (the default yellow and 5 skin tones) -> 1,896 64x64 PNGs. Like
  the mask competition's 7 photos per person: a group column (`id`, the emoji), one attribute
  that varies within the group (`tone`, like the mask) and two that belong to it (`gender`:
  man / woman / neutral, from the emoji's name; `kind`: hand / person, from its subcategory).
  Writes images/, labels_clean.csv (true labels), labels.csv (with planted errors) and
  planted.csv (path,column,true,given,kind), seeded:
  - per group: the gender of 10% of the gendered people flipped on all 6 pictures;
  - per image, varying attribute: 5% of the pictures moved to a neighbouring tone;
  - per image, group attribute: one picture of each of 10 other people given the other gender.

Score:  composite_emoji.py score PLANTED_CSV ISSUES_CSV [CLEANLAB_PRED_PROBS LABELS_CSV]
  Precision and recall of the flagged rows of `loupe issues` per column and per kind of error;
  with Loupe's pred_probs.csv, also cleanlab 2.9's find_label_issues per column, per picture,
  on the same out-of-fold probabilities (the reference)."""
import csv, json, os, random, re, shutil, sys

TONES = ["default", "light", "medium-light", "medium", "medium-dark", "dark"]
TONE_CODES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark", "1F3FF": "dark"}


def gender(name):
    words = set(re.split(r"[^A-Z]+", name.upper()))
    if words & {"WOMAN", "GIRL", "FEMALE", "PRINCESS", "MERMAID", "QUEEN"}:
        return "woman"
    if words & {"MAN", "BOY", "MALE", "PRINCE", "MERMAN", "KING"}:
        return "man"
    return "neutral"


def kind(subcategory):
    return "hand" if subcategory.startswith("hand") or subcategory in ("body-parts",) else "person"


def build(pkg, out):
    emoji = json.load(open(os.path.join(pkg, "emoji.json"), encoding="utf-8"))
    img = os.path.join(pkg, "img", "google", "64")
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rows = []
    for e in emoji:
        tones = {k: v for k, v in (e.get("skin_variations") or {}).items() if k in TONE_CODES}
        if len(tones) != 5:
            continue
        pictures = [("default", e["image"])] + [(TONE_CODES[k], v["image"]) for k, v in sorted(tones.items())]
        if not all(os.path.exists(os.path.join(img, p)) for _, p in pictures):
            continue
        for tone, picture in pictures:
            rel = f"images/{e['short_name']}__{tone}.png"
            shutil.copyfile(os.path.join(img, picture), os.path.join(out, rel))
            rows.append({"path": rel, "id": e["short_name"], "tone": tone,
                         "gender": gender(e["name"]), "kind": kind(e["subcategory"])})
    rng = random.Random(0)
    given = [dict(r) for r in rows]
    planted = []
    people = sorted({r["id"] for r in rows if r["gender"] != "neutral"})
    flipped = set(rng.sample(people, len(people) // 10))
    other = {"man": "woman", "woman": "man"}
    for r in given:
        if r["id"] in flipped:
            r["gender"] = other[r["gender"]]
            planted.append((r["path"], "gender", other[r["gender"]], r["gender"], "group"))
    single = rng.sample([p for p in people if p not in flipped], 10)
    for p in single:
        r = rng.choice([r for r in given if r["id"] == p])
        r["gender"] = other[r["gender"]]
        planted.append((r["path"], "gender", other[r["gender"]], r["gender"], "image-in-group"))
    for k in rng.sample(range(len(given)), len(given) // 20):
        r = given[k]
        t = TONES.index(r["tone"])
        # A neighbouring tone (the default yellow's neighbour is the lightest skin).
        n = t + rng.choice([-1, 1]) if 1 < t < 5 else {0: 1, 1: 2, 5: 4}[t]
        planted.append((r["path"], "tone", r["tone"], TONES[n], "image"))
        r["tone"] = TONES[n]
    for name, data in (("labels_clean.csv", rows), ("labels.csv", given)):
        with open(os.path.join(out, name), "w", newline="") as f:
            w = csv.DictWriter(f, ["path", "id", "tone", "gender", "kind"])
            w.writeheader()
            w.writerows(data)
    with open(os.path.join(out, "planted.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "column", "true", "given", "kind"])
        w.writerows(planted)
    print(f"{len(rows)} pictures of {len(rows) // 6} emoji; {len(planted)} planted errors "
          f"({len(flipped)} people's gender x 6, {len(single)} single pictures' gender, "
          f"{len(given) // 20} pictures' tone)")


def prf(found, planted):
    tp = len(found & planted)
    p = tp / len(found) if found else 0.0
    r = tp / len(planted) if planted else 0.0
    return f"flagged {len(found):4}  planted {len(planted):4}  found {tp:4}  precision {p:.3f}  recall {r:.3f}"


def by_kind(planted, flagged):
    """Precision and recall per kind of error. A flag on a column that belongs to the group
    counts as a group's when most of that group's pictures are flagged on it, else as a single
    picture's."""
    group_of = lambda path: path.split("/")[1].split("__")[0]
    per_group = {}
    for path, c in flagged:
        per_group[(group_of(path), c)] = per_group.get((group_of(path), c), 0) + 1
    claimed = {
        "group": {f for f in flagged if f[1] == "gender" and per_group[(group_of(f[0]), f[1])] > 3},
        "image-in-group": {f for f in flagged if f[1] == "gender" and per_group[(group_of(f[0]), f[1])] <= 3},
        "image": {f for f in flagged if f[1] == "tone"},
    }
    for k in sorted(claimed):
        want = {(r["path"], r["column"]) for r in planted if r["kind"] == k}
        print(f"  planted {k:15} {prf(claimed[k], want)}")


def score(planted_csv, issues_csv, probs_csv=None, labels_csv=None):
    planted = list(csv.DictReader(open(planted_csv)))
    flagged = {(r["path"], r["column"]) for r in csv.DictReader(open(issues_csv)) if r["flagged"] == "1"}
    columns = ["tone", "gender", "kind"]
    print("loupe issues (per column; a group-level column judged per group, plus the group-majority check):")
    for c in columns:
        want = {(r["path"], c) for r in planted if r["column"] == c}
        print(f"  {c:7} {prf({f for f in flagged if f[1] == c}, want)}")
    by_kind(planted, flagged)
    if probs_csv:
        import numpy as np
        from cleanlab.filter import find_label_issues
        probs = list(csv.DictReader(open(probs_csv)))
        labels = {r["path"]: r for r in csv.DictReader(open(labels_csv))}
        print("cleanlab 2.9 find_label_issues per column, per picture, same probabilities (reference):")
        found_all = set()
        for c in columns:
            values = sorted(h.split("=", 1)[1] for h in probs[0] if h.startswith(c + "="))
            p = np.array([[float(r[f"{c}={v}"]) for v in values] for r in probs])
            y = np.array([values.index(labels[r["path"]][c]) for r in probs])
            issues = find_label_issues(y, p / p.sum(1, keepdims=True))
            found = {(probs[i]["path"], c) for i in np.flatnonzero(issues)}
            found_all |= found
            want = {(r["path"], c) for r in planted if r["column"] == c}
            print(f"  {c:7} {prf(found, want)}")
        by_kind(planted, found_all)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    else:
        score(*sys.argv[2:])
