"""Label efficiency on the demo: BALD vs random vs entropy vs BatchBALD (oracle simulation).

Run the simulation (long: hours on the 2-core CPU at full size) and print the tables:
    PYTHONPATH=. .venv/bin/python benchmarks/label_efficiency.py --out results.csv [simulate args]
Only render tables from CSVs written earlier by `activelearn simulate`:
    PYTHONPATH=. .venv/bin/python benchmarks/label_efficiency.py --render a.csv b.csv
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", nargs="+", type=Path, help="only render these CSV files")
    known, rest = parser.parse_known_args()
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
