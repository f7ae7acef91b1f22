"""Oracle simulation: active learning with labels revealed from a manifest, no database.

Each round runs `activelearn.services.pipeline.train_and_score`, the very function the worker
runs, on the labels revealed so far; the `batch` highest-priority pool samples of its ranking
are then revealed, until `budget` labels. One CSV row per round. With `init` 0 the strategy
picks the first batch too, with no model (pipeline.rank_pool: typiclust/auto cluster the
embeddings, probability strategies draw at random).

When the learner consumes embeddings or a strategy clusters them, the representation is the
app's: `services.features.compute_features`, the function the worker's representation stage
runs, for the same `backbone` setting (hog by default: HOG at two scales joined with a 30-d
pixel PCA; ssl: the same joined with a SimCLR encoder trained `ssl_epochs` epochs;
torchvision:<arch> with local weights) and the same seed. It is computed once per run, fitted
on the pool's images only (the test images are embedded with the pool's fit, never fitted on),
and reused by every strategy and repeat.
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from torch import Tensor

from activelearn.core.learners import LEARNERS
from activelearn.core.representation import RepresentationProgress
from activelearn.core.strategies import STRATEGIES
from activelearn.errors import InvalidSetting
from activelearn.ingest.decode import ImageRejected, decode_image
from activelearn.ingest.demo import DEMO_CLASSES, demo_images
from activelearn.ingest.sources import SourceError, scan_manifest
from activelearn.services.features import compute_features
from activelearn.services.pipeline import needs_features, rank_pool, train_and_score
from activelearn.services.settings import HOG_BACKBONE, ProjectSettings

CSV_COLUMNS = (
    "strategy",
    "repeat",
    "round",
    "n_labels",
    "test_accuracy",
    "test_nll",
    "test_ece",
    "seconds",
)
THRESHOLDS = (0.90, 0.95)
APP_SSL_EPOCHS = ProjectSettings().ssl_epochs  # a new project's, so --backbone ssl matches it


class SimulationError(Exception):
    """The simulation cannot start (bad manifest, too few images, unknown strategy)."""


@dataclass(frozen=True)
class LabeledImages:
    pixels: np.ndarray  # (N, C, S, S) uint8
    labels: np.ndarray  # (N,) int64 class indices
    classes: list[str]


@dataclass(frozen=True)
class SimulationConfig:
    strategies: tuple[str, ...] = ("bald", "random")
    init: int = 20
    batch: int = 10
    budget: int = 300
    members: int = 5
    epochs: int = 20
    batch_size: int = 64
    repeats: int = 3
    seed: int = 0
    device: str = "auto"
    balanced_init: bool = False  # draw the initial labels evenly across classes
    first_repeat: int = 0  # repeats are numbered first_repeat.. (to extend an earlier run)
    learner: str = "cnn"  # a name in activelearn.core.learners.LEARNERS
    # The representation, as the project settings of the same names choose it in the app.
    backbone: str = HOG_BACKBONE  # hog | ssl | torchvision:<architecture>
    backbone_weights: str = ""  # local weights file of a torchvision backbone
    ssl_epochs: int = APP_SSL_EPOCHS  # self-supervised epochs (backbone ssl only)


@dataclass(frozen=True)
class Representation:
    """Per-sample features of the pool (N, D) and of the test set (N_test, D), same D."""

    pool: Tensor
    test: Tensor


@dataclass(frozen=True)
class RoundRow:
    strategy: str
    repeat: int
    round: int
    n_labels: int
    test_accuracy: float
    test_nll: float
    test_ece: float
    seconds: float

    def as_csv(self) -> list[str]:
        return [
            self.strategy,
            str(self.repeat),
            str(self.round),
            str(self.n_labels),
            f"{self.test_accuracy:.4f}",
            f"{self.test_nll:.4f}",
            f"{self.test_ece:.4f}",
            f"{self.seconds:.2f}",
        ]


def read_manifest(
    path: str | Path, *, image_size: int, channels: int, classes: list[str] | None = None
) -> LabeledImages:
    """Decode every labeled image of a `path,label` manifest (unlabeled rows are an error)."""
    try:
        scan = scan_manifest(path)
    except SourceError as error:
        raise SimulationError(str(error)) from error
    names = list(classes) if classes is not None else []
    pixels, labels = [], []
    for item in scan.items:
        if item.error or item.data is None:
            raise SimulationError(f"{item.path}: {item.error or 'could not be read'}")
        if not item.label:
            raise SimulationError(f"{item.path}: the simulation needs a label for every image")
        try:
            decoded = decode_image(item.data, image_size=image_size, channels=channels)
        except ImageRejected as error:
            raise SimulationError(f"{item.path}: {error.reason}") from error
        if item.label not in names:
            if classes is not None:
                raise SimulationError(f"{item.path}: label {item.label!r} is not in the pool")
            names.append(item.label)
        pixels.append(decoded.pixels)
        labels.append(names.index(item.label))
    if not pixels:
        raise SimulationError(f"{path}: no images")
    return LabeledImages(np.stack(pixels), np.asarray(labels, dtype=np.int64), names)


def demo_sets(*, image_size: int = 28) -> tuple[LabeledImages, LabeledImages]:
    """The built-in MNIST subset: (pool of 4,000, test of 1,000)."""
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {"pool": ([], []), "test": ([], [])}
    for _name, data, label, split in demo_images():
        decoded = decode_image(data, image_size=image_size, channels=1)
        parts[split][0].append(decoded.pixels)
        parts[split][1].append(DEMO_CLASSES.index(label))
    pool, test = (
        LabeledImages(np.stack(parts[s][0]), np.asarray(parts[s][1]), list(DEMO_CLASSES))
        for s in ("pool", "test")
    )
    return pool, test


def _initial(labels: np.ndarray, n: int, rng: np.random.Generator, *, balanced: bool) -> np.ndarray:
    if not balanced:
        return rng.choice(len(labels), size=n, replace=False)
    classes = np.unique(labels)
    picked: list[int] = []
    for i, cls in enumerate(classes):
        share = n // len(classes) + (1 if i < n % len(classes) else 0)
        members = np.flatnonzero(labels == cls)
        picked.extend(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.asarray(picked)


def project_settings(config: SimulationConfig, pool: LabeledImages) -> ProjectSettings:
    """The settings of a project that runs this simulation's rounds (strategy: the first)."""
    return ProjectSettings(
        strategy=config.strategies[0] if config.strategies else "random",
        learner=config.learner,
        backbone=config.backbone,
        backbone_weights=config.backbone_weights,
        ssl_epochs=config.ssl_epochs,
        members=config.members,
        epochs=config.epochs,
        batch_size=config.batch_size,
        image_size=int(pool.pixels.shape[-1]),
        channels=int(pool.pixels.shape[1]),
        acquisition_batch=config.batch,
    )


def compute_representation(
    pool: LabeledImages,
    test: LabeledImages,
    settings: ProjectSettings,
    *,
    device: str,
    progress: Callable[[RepresentationProgress], None] | None = None,
) -> Representation:
    """The app's features for the pool and the test set: the representation stage's function
    on the pool's and the test's images, as one project holding both, fitted on the pool only
    (the test rows are embedded with the pool's fit)."""
    images = np.concatenate([pool.pixels, test.pixels])
    is_pool = np.arange(len(images)) < len(pool.pixels)
    features, _ = compute_features(
        images, pool=is_pool, settings=settings, device=device, progress=progress
    )
    rows = torch.from_numpy(features)
    return Representation(pool=rows[is_pool], test=rows[~is_pool])


def _check(config: SimulationConfig, pool: LabeledImages) -> None:
    unknown = [s for s in config.strategies if s not in STRATEGIES]
    if unknown:
        raise SimulationError(
            f"unknown strategy {', '.join(unknown)}; known: {', '.join(STRATEGIES)}"
        )
    if config.learner not in LEARNERS:
        raise SimulationError(f"unknown learner {config.learner}; known: {', '.join(LEARNERS)}")
    if config.init < 0 or config.batch < 1 or config.budget < max(config.init, 1):
        raise SimulationError("need init >= 0, batch >= 1 and budget >= init (and >= 1)")
    if config.budget > len(pool.labels):
        raise SimulationError(f"budget {config.budget} exceeds the pool ({len(pool.labels)})")
    try:
        project_settings(config, pool).validate()  # the backbone, its weights, ssl_epochs, ...
    except InvalidSetting as error:
        raise SimulationError(str(error)) from error


def _reveal(labeled: np.ndarray, rank: np.ndarray, take: int) -> None:
    """Mark the `take` best-ranked rows (rank 1 first; rank 0 = not rankable) labeled."""
    ranked = np.flatnonzero(rank > 0)
    labeled[ranked[np.argsort(rank[ranked], kind="stable")[:take]]] = True


def simulate(
    pool: LabeledImages,
    test: LabeledImages,
    config: SimulationConfig,
    *,
    on_row: Callable[[RoundRow], None] | None = None,
    representation: Representation | None = None,
    on_epoch: Callable[[RepresentationProgress], None] | None = None,
) -> list[RoundRow]:
    """Run every strategy x repeat; returns (and streams through on_row) one row per round.

    `representation`: features computed earlier for this pool and test set (else computed
    here, once, when the learner or a strategy needs them; `on_epoch` follows its training)."""
    _check(config, pool)
    n_classes = len(pool.classes)
    base = project_settings(config, pool)
    if representation is None and any(
        needs_features(replace(base, strategy=s)) for s in config.strategies
    ):
        representation = compute_representation(
            pool, test, base, device=config.device, progress=on_epoch
        )
    pool_features = None if representation is None else representation.pool
    test_features = None if representation is None else representation.test
    rows: list[RoundRow] = []
    # Repeat-major: every strategy of a repeat runs before the next repeat, so a run that is
    # stopped early still holds paired comparisons.
    for repeat in range(config.first_repeat, config.first_repeat + config.repeats):
        for strategy in config.strategies:
            settings = replace(base, strategy=strategy)
            # The same initial labels for every strategy of a repeat: a paired comparison.
            rng = np.random.default_rng([config.seed, repeat])
            labeled = np.zeros(len(pool.labels), dtype=bool)
            labeled[_initial(pool.labels, config.init, rng, balanced=config.balanced_init)] = True
            round_number = 0
            if not labeled.any():  # --init 0: the strategy picks the first batch, no model yet
                seed = config.seed * 1_000_003 + repeat * 1_009  # round 0's
                ranking = rank_pool(
                    None,
                    strategy=strategy,
                    acquisition_batch=config.batch,
                    n_pool=len(labeled),
                    n_classes=n_classes,
                    features=pool_features,
                    seed=seed,
                    generator=torch.Generator().manual_seed(seed),
                )
                _reveal(labeled, ranking.rank.numpy(), min(config.batch, config.budget))
            while True:
                started = time.perf_counter()
                train_idx = np.flatnonzero(labeled)
                # The whole pool, labeled rows included but not rankable (the round runner's
                # view): label spreading and the clustering strategies see the labeled rows.
                result = train_and_score(
                    train_pixels=pool.pixels[train_idx],
                    train_labels=pool.labels[train_idx],
                    pool_pixels=pool.pixels,
                    eval_pixels=test.pixels,
                    eval_labels=test.labels,
                    n_classes=n_classes,
                    settings=settings,
                    pool_rankable=torch.from_numpy(~labeled),
                    device=config.device,
                    seed=config.seed * 1_000_003 + repeat * 1_009 + round_number,
                    train_features=None if pool_features is None else pool_features[train_idx],
                    pool_features=pool_features,
                    eval_features=test_features,
                    train_pool_index=train_idx,
                )
                ensemble = result.metrics[0]
                row = RoundRow(
                    strategy=strategy,
                    repeat=repeat,
                    round=round_number,
                    n_labels=int(labeled.sum()),
                    test_accuracy=ensemble.accuracy,
                    test_nll=ensemble.nll,
                    test_ece=ensemble.ece,
                    seconds=time.perf_counter() - started,
                )
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                if labeled.sum() >= config.budget or result.pool is None:
                    break
                take = min(config.batch, config.budget - int(labeled.sum()))
                _reveal(labeled, result.pool.rank.numpy(), take)
                round_number += 1
    return rows


def labels_to_reach(rows: Iterable[RoundRow], threshold: float) -> dict[str, float]:
    """Per strategy: the median over repeats of the first n_labels with accuracy >= threshold
    (inf for a repeat that never got there)."""
    first: dict[tuple[str, int], float] = {}
    seen: dict[str, set[int]] = {}
    for row in sorted(rows, key=lambda r: (r.strategy, r.repeat, r.n_labels)):
        seen.setdefault(row.strategy, set()).add(row.repeat)
        key = (row.strategy, row.repeat)
        if key not in first and row.test_accuracy >= threshold:
            first[key] = float(row.n_labels)
    return {
        strategy: statistics.median(first.get((strategy, r), math.inf) for r in sorted(repeats))
        for strategy, repeats in seen.items()
    }


def summary_table(rows: Sequence[RoundRow], budget: int) -> str:
    lines = ["strategy        " + "  ".join(f"labels to {t:.0%}" for t in THRESHOLDS)]
    reach = {t: labels_to_reach(rows, t) for t in THRESHOLDS}
    for strategy in dict.fromkeys(r.strategy for r in rows):
        cells = []
        for t in THRESHOLDS:
            value = reach[t][strategy]
            cells.append(f"{value:>13.0f}" if math.isfinite(value) else f"{'>' + str(budget):>13}")
        lines.append(f"{strategy:<16}" + "  ".join(cells))
    return "\n".join(lines)


def write_rows(handle: TextIO, rows: Iterable[RoundRow], *, header: bool) -> None:
    writer = csv.writer(handle)
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(row.as_csv())


def run_cli(
    *,
    manifest: str | None,
    test_manifest: str | None,
    demo: bool,
    config: SimulationConfig,
    out: str | None,
    image_size: int = 28,
    channels: int = 1,
    stream: TextIO | None = None,
) -> int:
    """`activelearn simulate`: load the data, run, write the CSV, print the summary."""
    stream = stream if stream is not None else sys.stdout
    if demo:
        pool, test = demo_sets(image_size=image_size)
    else:
        if not manifest or not test_manifest:
            raise SimulationError("give --manifest POOL.csv and --test TEST.csv, or --demo")
        pool = read_manifest(manifest, image_size=image_size, channels=channels)
        test = read_manifest(
            test_manifest, image_size=image_size, channels=channels, classes=pool.classes
        )
    print(
        f"pool {len(pool.labels)}, test {len(test.labels)}, classes {len(pool.classes)}; "
        f"learner {config.learner}, strategies {', '.join(config.strategies)}, "
        f"backbone {config.backbone}",
        file=stream,
    )
    handle = open(out, "w", newline="", encoding="utf-8") if out else None  # noqa: SIM115
    try:
        if handle is not None:
            write_rows(handle, [], header=True)

        def on_row(row: RoundRow) -> None:
            if handle is not None:
                write_rows(handle, [row], header=False)
                handle.flush()
            print(
                f"{row.strategy} repeat {row.repeat} round {row.round}: {row.n_labels} labels, "
                f"accuracy {row.test_accuracy:.3f} ({row.seconds:.1f} s)",
                file=stream,
                flush=True,
            )

        def on_epoch(update: RepresentationProgress) -> None:
            print(
                f"representation: epoch {update.epoch}/{update.epochs}, loss {update.loss:.3f} "
                f"({update.images_per_second:.0f} images/s)",
                file=stream,
                flush=True,
            )

        rows = simulate(pool, test, config, on_row=on_row, on_epoch=on_epoch)
    finally:
        if handle is not None:
            handle.close()
    print("\nmedian labels needed (over repeats):", file=stream)
    print(summary_table(rows, config.budget), file=stream)
    return 0
