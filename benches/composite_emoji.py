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

Scoring is benches/composite_score.py's."""
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


if __name__ == "__main__":
    build(sys.argv[2], sys.argv[3])
