"""Label efficiency on the demo: BALD vs random vs entropy vs BatchBALD (oracle simulation).

Run the simulation (long: hours on the 2-core CPU at full size) and print the tables:
    PYTHONPATH=. .venv/bin/python benchmarks/label_efficiency.py --out results.csv [simulate args]
Only render tables from CSVs written earlier by `activelearn simulate`:
    PYTHONPATH=. .venv/bin/python benchmarks/label_efficiency.py --render a.csv b.csv
A learner x strategy grid (medians over repeats; files of one learner joined by commas):
    PYTHONPATH=. .venv/bin/python benchmarks/label_efficiency.py \
        --grid embedding=emb.csv cnn=cnn_random.csv,cnn_auto.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout too

from activelearn.simulate import THRESHOLDS, RoundRow, labels_to_reach

DEFAULT_ARGS = [
    "--demo",
    "--strategy", "bald", "--strategy", "random", "--strategy", "entropy",
    "--strategy", "batchbald",
    "--init", "20", "--batch", "10", "--budget", "300", "--members", "5", "--epochs", "10",
    "--repeats", "3", "--seed", "0",
]  # fmt: skip
CHECKPOINTS = (50, 100, 150, 200, 250, 300)
GRID_THRESHOLDS = (0.90, 0.95, 0.97)
GRID_CHECKPOINTS = (20, 50, 100, 200)
GRID_ECE = (50, 200)


def read_rows(paths: list[Path]) -> list[RoundRow]:
    rows = []
    for path in paths:
        with path.open(newline="") as handle:
            for record in csv.DictReader(handle):
                rows.append(
                    RoundRow(
                        strategy=record["strategy"],
                        repeat=int(record["repeat"]),
                        round=int(record["round"]),
                        n_labels=int(record["n_labels"]),
                        test_accuracy=float(record["test_accuracy"]),
                        test_nll=float(record["test_nll"]),
                        test_ece=float(record["test_ece"]),
                        seconds=float(record["seconds"]),
                    )
                )
    return rows


def render(rows: list[RoundRow]) -> str:
    strategies = list(dict.fromkeys(r.strategy for r in rows))
    repeats = defaultdict(set)
    for row in rows:
        repeats[row.strategy].add(row.repeat)
    reach = {t: labels_to_reach(rows, t) for t in THRESHOLDS}
    lines = [
        "| strategy | repeats | median labels to 90% | median labels to 95% | rounds | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for strategy in strategies:
        mine = [r for r in rows if r.strategy == strategy]
        cells = []
        for t in THRESHOLDS:
            value = reach[t][strategy]
            budget = max(r.n_labels for r in mine)
            cells.append(f"{value:.0f}" if math.isfinite(value) else f"not reached (> {budget})")
        lines.append(
            f"| {strategy} | {len(repeats[strategy])} | {cells[0]} | {cells[1]} | {len(mine)} "
            f"| {sum(r.seconds for r in mine):.0f} |"
        )
    lines += [
        "",
        "Test accuracy (mean over repeats) by number of labels:",
        "",
        "| strategy | " + " | ".join(str(n) for n in CHECKPOINTS) + " |",
        "|---|" + "---|" * len(CHECKPOINTS),
    ]
    for strategy in strategies:
        cells = []
        for n in CHECKPOINTS:
            values = [r.test_accuracy for r in rows if r.strategy == strategy and r.n_labels == n]
            cells.append(f"{statistics.mean(values):.3f}" if values else "-")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _median_at(rows: list[RoundRow], strategy: str, n: int, field: str) -> str:
    values = [getattr(r, field) for r in rows if r.strategy == strategy and r.n_labels == n]
    return f"{statistics.median(values):.3f}" if values else "-"


def _labels(value: float, budget: int) -> str:
    return f"{value:.0f}" if math.isfinite(value) else f">{budget}"


def _per_repeat(rows: list[RoundRow], threshold: float) -> list[float]:
    """First n_labels at or above the threshold, per repeat in order (inf: never)."""
    return [
        labels_to_reach([r for r in rows if r.repeat == repeat], threshold)[rows[0].strategy]
        for repeat in sorted({r.repeat for r in rows})
    ]


def render_grid(grid: dict[str, list[RoundRow]]) -> str:
    """Per learner and strategy: median labels to each threshold (each repeat's in brackets),
    median test accuracy and ECE at fixed label counts (medians over the repeats present)."""
    reach_head = " | ".join(f"labels to {t:.0%}" for t in GRID_THRESHOLDS)
    acc_head = " | ".join(f"acc @{n}" for n in GRID_CHECKPOINTS)
    ece_head = " | ".join(f"ECE @{n}" for n in GRID_ECE)
    lines = [
        f"| learner | strategy | repeats | {reach_head} | {acc_head} | {ece_head} |",
        "|---|---|---|" + "---|" * (len(GRID_THRESHOLDS) + len(GRID_CHECKPOINTS) + len(GRID_ECE)),
    ]
    for learner, rows in grid.items():
        reach = {t: labels_to_reach(rows, t) for t in GRID_THRESHOLDS}
        for strategy in dict.fromkeys(r.strategy for r in rows):
            mine = [r for r in rows if r.strategy == strategy]
            budget = max(r.n_labels for r in mine)
            cells = [
                f"{_labels(reach[t][strategy], budget)} "
                f"({'/'.join(_labels(v, budget) for v in _per_repeat(mine, t))})"
                for t in GRID_THRESHOLDS
            ]
            cells += [_median_at(rows, strategy, n, "test_accuracy") for n in GRID_CHECKPOINTS]
            cells += [_median_at(rows, strategy, n, "test_ece") for n in GRID_ECE]
            n_repeats = len({r.repeat for r in mine})
            lines.append(f"| {learner} | {strategy} | {n_repeats} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", nargs="+", type=Path, help="only render these CSV files")
    parser.add_argument(
        "--grid", nargs="+", metavar="LEARNER=A.csv[,B.csv]", help="only render a learner grid"
    )
    known, rest = parser.parse_known_args()
    if known.grid:
        grid = {}
        for item in known.grid:
            learner, files = item.split("=", 1)
            grid[learner] = read_rows([Path(f) for f in files.split(",")])
        print(render_grid(grid))
        return 0
    if known.render:
        print(render(read_rows(known.render)))
        return 0
    from activelearn.cli import main as cli_main

    argv = ["simulate", *DEFAULT_ARGS, *rest]
    if "--out" not in rest:
        argv += ["--out", "label_efficiency.csv"]
    code = cli_main(argv)
    out = Path(argv[argv.index("--out") + 1])
    print()
    print(render(read_rows([out])))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
