"""Precision and recall of `loupe issues` on a composite dataset with planted errors, per
column and per kind of error, beside cleanlab 2.9 on the same out-of-fold probabilities.
Shared by benches/composite.sh (emoji) and benches/composite_digits.sh (digits x clothes).

Usage:  composite_score.py PLANTED_CSV ISSUES_CSV LABELS_CSV GROUP_COL [PRED_PROBS_CSV]
  PLANTED_CSV: path,column,true,given,kind, kind one of group (the whole group's value wrong),
  image-in-group (one picture against its group) and image (a per-picture attribute).
  LABELS_CSV: the labels `loupe issues` was given (path, the group column, the label columns).
  With Loupe's pred_probs.csv, cleanlab's find_label_issues per column, per picture, is scored
  the same way (the reference), and the out-of-fold model's accuracy per column against the
  true labels (the given ones, with the planted errors undone) says how well it sees each."""
import csv
import sys


def prf(found, planted):
    tp = len(found & planted)
    p = tp / len(found) if found else 0.0
    r = tp / len(planted) if planted else 0.0
    return f"flagged {len(found):4}  planted {len(planted):4}  found {tp:4}  precision {p:.3f}  recall {r:.3f}"


def by_kind(planted, flagged, group_of, group_size, group_columns):
    """A flag on a group-level column counts as a whole group's when most of that group's
    pictures are flagged on it, else as a single picture's against its group."""
    per_group = {}
    for path, c in flagged:
        per_group[(group_of[path], c)] = per_group.get((group_of[path], c), 0) + 1
    most = lambda f: per_group[(group_of[f[0]], f[1])] * 2 > group_size[group_of[f[0]]]
    claimed = {
        "group": {f for f in flagged if f[1] in group_columns and most(f)},
        "image-in-group": {f for f in flagged if f[1] in group_columns and not most(f)},
        "image": {f for f in flagged if f[1] not in group_columns},
    }
    for k in sorted(claimed):
        want = {(r["path"], r["column"]) for r in planted if r["kind"] == k}
        if want:
            print(f"  planted {k:15} {prf(claimed[k], want)}")


def score(planted_csv, issues_csv, labels_csv, group_col, probs_csv=None):
    planted = list(csv.DictReader(open(planted_csv)))
    labels = {r["path"]: r for r in csv.DictReader(open(labels_csv))}
    columns = [c for c in next(iter(labels.values())) if c not in ("path", group_col)]
    group_of = {p: r[group_col] for p, r in labels.items()}
    group_size = {}
    for g in group_of.values():
        group_size[g] = group_size.get(g, 0) + 1
    group_columns = {r["column"] for r in planted if r["kind"] != "image"}
    flagged = {(r["path"], r["column"]) for r in csv.DictReader(open(issues_csv)) if r["flagged"] == "1"}
    print("loupe issues (per column; a group-level column judged per group, plus the group-majority check):")
    for c in columns:
        want = {(r["path"], c) for r in planted if r["column"] == c}
        print(f"  {c:7} {prf({f for f in flagged if f[1] == c}, want)}")
    by_kind(planted, flagged, group_of, group_size, group_columns)
    if probs_csv:
        import numpy as np
        from cleanlab.filter import find_label_issues

        probs = list(csv.DictReader(open(probs_csv)))
        true = {(r["path"], r["column"]): r["true"] for r in planted}
        accuracy = []
        for c in columns:
            values = sorted(h.split("=", 1)[1] for h in probs[0] if h.startswith(c + "="))
            right = [
                max(values, key=lambda v: float(r[f"{c}={v}"]))
                == true.get((r["path"], c), labels[r["path"]][c])
                for r in probs
            ]
            accuracy.append(f"{c} {sum(right) / len(right):.3f}")
        print(f"out-of-fold accuracy against the true labels: {'  '.join(accuracy)}")
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
        by_kind(planted, found_all, group_of, group_size, group_columns)


if __name__ == "__main__":
    score(*sys.argv[1:])
