"""How the size of the flagged set trades against its precision, on the probabilities Loupe's
last searches kept: each run's pred_probs.csv sharpened further by p^(1/s) (s = 1 is what
Loupe used; s -> 0 is "the argmax disagrees with the given label"), then cleanlab 2.9's
find_label_issues (prune_by_noise_rate, Loupe's default method). Tells whether one more
sharpening of the probabilities could put most of MNIST's human-confirmed errors in the
flagged set without losing the planted-noise F1.

Usage:  flag_tradeoff.py   (from the repository root, after benches/label_issues.sh and
        benches/digit_errors.sh confirmed ambiguous confusable)
"""
import csv
import json
import os

import numpy as np
from cleanlab.filter import find_label_issues

DATA = ".bench-data"
SHARPEN = [1.0, 0.7, 0.5, 0.35, 0.2, 0.0]


def latest_run(issues_dir):
    """The newest search there that ran with the default method."""
    runs = sorted(
        os.path.join(issues_dir, d)
        for d in os.listdir(issues_dir)
        if os.path.isfile(os.path.join(issues_dir, d, "pred_probs.csv"))
        and json.load(open(os.path.join(issues_dir, d, "config.json")))["method"] == "prune-by-noise-rate"
    )
    return os.path.join(runs[-1], "pred_probs.csv") if runs else None


def load(pred_probs, given_of):
    rows = list(csv.DictReader(open(pred_probs)))
    classes = [c for c in rows[0] if c != "path"]
    paths = [r["path"] for r in rows]
    p = np.array([[float(r[c]) for c in classes] for r in rows])
    y = np.array([classes.index(given_of(path)) for path in paths])
    return paths, p, y


def line(name, paths, p, y, planted):
    wrong = np.array([path in planted for path in paths])
    cells = []
    for s in SHARPEN:
        if s == 0:
            flags = p.argmax(1) != y
        else:
            q = np.clip(p, 1e-30, 1) ** (1 / s)
            flags = find_label_issues(y, q / q.sum(1, keepdims=True))
        found = int((flags & wrong).sum())
        prec = found / max(int(flags.sum()), 1)
        rec = found / wrong.sum()
        f1 = 2 * prec * rec / max(prec + rec, 1e-9)
        cells.append(f"{int(flags.sum())} ({found}, F1 {f1:.2f})")
    print(f"| {name} | " + " | ".join(cells) + " |")


def main():
    print("| set | " + " | ".join(f"s = {s}" if s else "argmax" for s in SHARPEN) + " |")
    print("|---" * (len(SHARPEN) + 1) + "|")
    fm = f"{DATA}/fmnist-noisy"
    run = latest_run(f"{fm}/noisy/.loupe/issues")
    if run:
        planted = {r["path"] for r in csv.DictReader(open(f"{fm}/planted.csv"))}
        line("Fashion-MNIST, 300 planted", *load(run, lambda p: p.split("/")[0]), planted)
    sets = [("digits-test", "confirmed", [1], "MNIST test, 15 confirmed")]
    sets += [("digits", k, [1, 2, 3], f"MNIST train, 15 planted {k}") for k in ("ambiguous", "confusable")]
    for folder, kind, seeds, title in sets:
        for seed in seeds:
            d = f"{DATA}/{folder}"
            name = f"{kind}_{seed}"
            issues = f"{d}/.loupe/csv-labels_{name}/issues"
            run = latest_run(issues) if os.path.isdir(issues) else None
            if not run:
                continue
            given = {r["path"]: r["label"] for r in csv.DictReader(open(f"{d}/labels_{name}.csv"))}
            planted = {r["path"] for r in csv.DictReader(open(f"{d}/planted_{name}.csv"))}
            line(f"{title} ({seed})" if len(seeds) > 1 else title, *load(run, given.get), planted)


if __name__ == "__main__":
    main()
