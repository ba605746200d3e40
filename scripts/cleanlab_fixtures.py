"""Reference outputs of cleanlab 2.9's find_label_issues for tests/confident_learning.rs.

Run once with cleanlab 2.9 installed (pip install "cleanlab==2.9.*"); the JSON files it writes
under tests/fixtures/cleanlab/ are committed, so the tests need neither Python nor cleanlab.

Each fixture: labels, pred_probs (float32 values, given to cleanlab as float64 so both sides
compare the same numbers), and for every filter_by method the flagged indices ranked by
self-confidence and by normalized margin, plus the calibrated confident joint.
"""
import json
import sys
from pathlib import Path

import numpy as np
import cleanlab
from cleanlab.count import compute_confident_joint
from cleanlab.filter import find_label_issues

METHODS = ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"]


def make(n, k, noise, sharpness, seed, missing_class=False):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    if missing_class:
        true[true == k - 1] = 0  # class k-1 has no examples
    labels = true.copy()
    flip = rng.random(n) < noise
    # Noise goes mostly to the "next" class, as confusable classes do.
    labels[flip] = (true[flip] + rng.choice([1, 1, 1, 2], flip.sum())) % k
    if missing_class:
        labels[labels == k - 1] = 0
    logits = rng.normal(0, 1, (n, k)) + sharpness * np.eye(k)[true]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(np.float32)
    return labels, p


def fixture(name, labels, p32):
    p = p32.astype(np.float64)
    out = {"name": name, "cleanlab": cleanlab.__version__, "labels": labels.tolist(), "k": int(p.shape[1]),
           "pred_probs": [float(v) for v in p32.ravel()], "methods": {}}
    for m in METHODS:
        out["methods"][m] = {
            rank: find_label_issues(labels, p, filter_by=m, return_indices_ranked_by=rank).tolist()
            for rank in ["self_confidence", "normalized_margin"]
        }
    out["calibrated_confident_joint"] = compute_confident_joint(labels, p).tolist()
    return out


def main(dest):
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cases = [
        ("three_classes_20pct_noise", *make(300, 3, 0.2, 2.5, 1)),
        ("seven_classes_10pct_noise", *make(700, 7, 0.1, 3.0, 2)),
        ("ten_classes_noisy_model", *make(1000, 10, 0.15, 1.5, 3)),
        ("a_class_without_examples", *make(200, 4, 0.2, 2.5, 4, missing_class=True)),
    ]
    for name, labels, p in cases:
        (dest / f"{name}.json").write_text(json.dumps(fixture(name, labels, p)))
        print(name, {m: len(v["self_confidence"]) for m, v in fixture(name, labels, p)["methods"].items()})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/cleanlab")
