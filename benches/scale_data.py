"""Builds a dataset the shape of the face-mask competition's: 2,700 people x 7 JPEG photos of
384x512 (5 with a mask, 1 worn wrong, 1 without), gender and age band per person (age bands
<30 / 30-59 / 60+ at 47/45/8 %), in labels.csv (path,id,mask,gender,age).

The pictures are synthetic (a lit background, a head, hair, a mask when worn, sensor noise),
so JPEG decoding costs what a photo's does; they are for timing, not for judging quality.
Usage: scale_data.py OUT_DIR
"""

import csv
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 384, 512
PEOPLE = 2700
MASKS = ["wear"] * 5 + ["incorrect", "not_wear"]


def photo(rng, person, mask):
    skin, hair, bg_a, bg_b = person
    # A smooth background gradient with low-frequency blotches.
    y = np.linspace(0, 1, H)[:, None, None]
    bg = bg_a * (1 - y) + bg_b * y
    blot = rng.normal(0, 18, (H // 32, W // 32, 3))
    blot = np.asarray(
        Image.fromarray(np.uint8(np.clip(blot + 128, 0, 255))).resize((W, H), Image.BICUBIC),
        dtype=np.float32,
    ) - 128
    img = Image.fromarray(np.uint8(np.clip(bg + blot, 0, 255)))
    d = ImageDraw.Draw(img)
    cx = W // 2 + int(rng.integers(-30, 31))
    cy = H // 2 + int(rng.integers(-30, 31))
    d.ellipse([cx - 150, cy + 120, cx + 150, cy + 400], fill=tuple(int(c * 0.6) for c in hair))
    d.ellipse([cx - 105, cy - 170, cx + 105, cy + 110], fill=tuple(int(c) for c in hair))
    d.ellipse([cx - 90, cy - 140, cx + 90, cy + 130], fill=tuple(int(c) for c in skin))
    for ex in (-40, 40):
        d.ellipse([cx + ex - 12, cy - 40, cx + ex + 12, cy - 28], fill=(40, 30, 30))
    if mask == "wear":
        d.rectangle([cx - 85, cy + 5, cx + 85, cy + 110], fill=(200, 210, 230))
    elif mask == "incorrect":
        d.rectangle([cx - 85, cy + 55, cx + 85, cy + 125], fill=(200, 210, 230))
    else:
        d.ellipse([cx - 30, cy + 50, cx + 30, cy + 70], fill=(150, 60, 60))
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    noise = rng.normal(0, 6, (H, W, 3))
    return Image.fromarray(np.uint8(np.clip(np.asarray(img, np.float32) + noise, 0, 255)))


def person_photos(args):
    out, p = args
    rng = np.random.default_rng(p)
    pid = f"{p:06d}"
    gender = "female" if rng.random() < 0.6 else "male"
    age = rng.choice(["lt30", "30to59", "ge60"], p=[0.47, 0.45, 0.08])
    grey = {"lt30": 0.0, "30to59": 0.3, "ge60": 0.8}[age]
    hair = rng.uniform(20, 120, 3) * (1 - grey) + 200 * grey
    person = (
        rng.uniform(150, 235, 3),
        hair,
        rng.uniform(60, 220, 3),
        rng.uniform(60, 220, 3),
    )
    folder = os.path.join(out, "images", f"{pid}_{gender}_{age}")
    os.makedirs(folder, exist_ok=True)
    rows = []
    for i, mask in enumerate(MASKS):
        name = f"{mask}{i + 1 if mask == 'wear' else ''}.jpg"
        photo(rng, person, mask).save(os.path.join(folder, name), quality=90)
        rows.append([f"images/{pid}_{gender}_{age}/{name}", pid, mask, gender, age])
    return rows


def main(out):
    os.makedirs(out, exist_ok=True)
    with Pool() as pool:
        people = pool.map(person_photos, [(out, p) for p in range(PEOPLE)], chunksize=20)
    rows = [row for person in people for row in person]
    with open(os.path.join(out, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id", "mask", "gender", "age"])
        w.writerows(rows)


if __name__ == "__main__":
    main(sys.argv[1])
