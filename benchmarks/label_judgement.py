"""Cost and quality of the round's out-of-sample label judgement (issue 12: per-label rounds).

On the demo pool (4,000 digits) with the app's default features (`build_features`: HOG at two
scales joined with a 30-d pixel PCA) and the pool's kNN graph, --labels pool labels are drawn, a
share of them flipped to another class, and the labels judged by `find_label_issues` with
`members_per_fold` heads per fold (all folds' heads trained as the members of one fit). Prints,
per setting, the median judgement time and the planted errors found: top-k precision (= recall,
k = planted), best recall at precision >= 70% and cleanlab's flagged set.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python -W ignore benchmarks/label_judgement.py \
        --repeats 5 --per-fold 1 --per-fold 2 --per-fold 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout too

from activelearn.core.embedding_fit import pool_graph
from activelearn.core.label_issues import find_label_issues
from activelearn.core.representation import build_features
from benchmarks.embedding_learner import demo_arrays
from benchmarks.honesty import flip_labels, ranking_figures

N_CLASSES = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=300)
    parser.add_argument("--flipped", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-fold", type=int, action="append", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    per_fold = args.per_fold or [1, 2, 5]
    digits, labels, test = demo_arrays()
    pool_x, pool_y = digits[~test], labels[~test]
    started = time.perf_counter()
    _, features = build_features(torch.from_numpy(pool_x))
    print(f"features {tuple(features.shape)} in {time.perf_counter() - started:.1f} s")
    graph = pool_graph(features)
    find_label_issues(features[:50], pool_y[:50], n_classes=N_CLASSES)  # warm: cleanlab import
    print(
        f"\n{args.labels} labels, {args.flipped:.0%} flipped, {args.repeats} repeats, "
        f"{args.threads} thread(s)\n"
    )
    print("| heads per fold | median s | top-k | recall at P>=70% | flagged P | flagged R |")
    print("|---|---|---|---|---|---|")
    for k in per_fold:
        times, figures = [], []
        for repeat in range(args.repeats):
            rng = np.random.default_rng(100 + repeat)
            index = rng.choice(len(pool_y), size=args.labels, replace=False)
            noisy, planted = flip_labels(pool_y[index], args.flipped, rng)
            # the round's rows: the graph node of labeled pool row i is its pool index
            started = time.perf_counter()
            issues = find_label_issues(
                features[index],
                noisy,
                n_classes=N_CLASSES,
                seed=repeat,
                pool=graph,
                pool_index=index,
                members_per_fold=k,
            )
            times.append(time.perf_counter() - started)
            figures.append(ranking_figures(issues.score, issues.flagged, planted))
        mean = {key: float(np.mean([f[key] for f in figures])) for key in figures[0]}
        print(
            f"| {k} | {statistics.median(times):.2f} | {mean['top_k']:.3f} | "
            f"{mean['recall_at_p70']:.3f} | {mean['flag_p']:.3f} | {mean['flag_r']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
