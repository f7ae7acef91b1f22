"""Ensemble speed: vectorized formulation versus a sequential per-member loop.

Prints, for M in {1, 5, 10}: seconds per training epoch and pool-scoring throughput of the
shipped formulation ("auto": per device) and of the "loop" formulation, their ratio, and the
achieved GFLOP/s next to this machine's measured float32 matmul rate.

    .venv/bin/python benchmarks/ensemble_speed.py [--device auto] [--train-n 1024]
        [--pool-n 4096] [--members 1 5 10] [--formulations auto loop] [--repeats 5]
        [--epochs 1]

A formulation name with "-eager" appended trains without CUDA graphs (on CUDA the shipped
configuration replays each full-size training step from a captured graph; elsewhere the suffix
changes nothing). The ratio columns compare with "loop-eager" when it is measured, else "loop":
the plain per-member loop. On CUDA use --epochs 5 or more: each fit captures its graph once,
as a round does, and one epoch of 16 steps would mostly time the capture.

FLOPs are counted from the layer shapes (2 per multiply-add, convolutions and dense layers);
a training step is counted as 3x the forward pass (forward, input and weight gradients).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout too

import torch

from activelearn.core.ensemble import Ensemble, EnsembleConfig
from activelearn.services.pipeline import predict_in_chunks, score_pool


def _score(ensemble: Ensemble, pool: torch.Tensor) -> None:
    """The round's scoring path: chunked member probabilities, then every score field."""
    score_pool(predict_in_chunks(ensemble, pool), strategy="bald", acquisition_batch=10)


def forward_flops(ensemble: Ensemble) -> float:
    """Multiply-add FLOPs of one member's forward pass on one image."""
    s = ensemble.image_size
    c1, c2 = ensemble.config.widths
    stem = (s + 1) // 2
    side = stem // 2
    flops = 2 * stem * stem * c1 * ensemble.in_channels * 25  # conv1 5x5 stride 2
    flops += 2 * stem * stem * c2 * c1 * 9  # conv2 3x3
    flops += 2 * c2 * side * side * ensemble.config.hidden  # fc1
    flops += 2 * ensemble.config.hidden * ensemble.n_classes  # fc2
    return float(flops)


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Measured float32 matmul GFLOP/s (best of `repeats`)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=gen).to(device)
    b = torch.rand(size, size, generator=gen).to(device)
    best = float("inf")
    for _ in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def measure(
    members: int,
    formulations: list[str],
    *,
    device: str,
    train_n: int,
    pool_n: int,
    repeats: int,
    epochs: int = 1,
) -> dict[str, tuple[float, float, float]]:
    """formulation -> (s per epoch, pool images/s, forward FLOPs per image per member).

    Best of `repeats`, formulations interleaved within each repeat so that load from other
    processes on a shared machine hits them alike.
    """
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(train_n, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (train_n,), generator=gen)
    pool = (torch.rand(pool_n, 1, 28, 28, generator=gen) * 255).to(torch.uint8)
    ensembles = {}
    for formulation in formulations:
        config = EnsembleConfig(
            members=members,
            epochs=epochs,
            device=device,
            formulation=formulation.removesuffix("-eager"),
            cuda_graphs=not formulation.endswith("-eager"),
        )
        ensemble = Ensemble(config, in_channels=1, n_classes=10, image_size=28)
        ensemble.fit(x[:256], y[:256])  # warm-up: allocator, oneDNN/cuDNN kernel selection
        _score(ensemble, pool[:512])
        ensembles[formulation] = ensemble
    epoch = dict.fromkeys(formulations, float("inf"))
    scoring = dict.fromkeys(formulations, float("inf"))
    for _ in range(repeats):
        for formulation, ensemble in ensembles.items():
            history = ensemble.fit(x, y)
            epoch[formulation] = min(epoch[formulation], history.seconds / history.epochs_run)
            start = time.perf_counter()
            _score(ensemble, pool)
            _sync(ensemble.device)
            scoring[formulation] = min(scoring[formulation], time.perf_counter() - start)
    return {f: (epoch[f], pool_n / scoring[f], forward_flops(ensembles[f])) for f in formulations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-n", type=int, default=1024)
    parser.add_argument("--pool-n", type=int, default=4096)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--formulations", nargs="+", default=["auto", "loop"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed fit")
    args = parser.parse_args()

    probe = Ensemble(EnsembleConfig(device=args.device), in_channels=1, n_classes=10, image_size=28)
    device = probe.device
    rate = matmul_rate(device)
    print(
        f"device: {device} (auto: {probe.formulation} training, {probe.inference_formulation} "
        f"scoring), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"float32 matmul (2048^2): {rate:.1f} GFLOP/s")
    print(
        f"train: {args.train_n} images/epoch, batch 64, {args.epochs} epoch(s) per fit; "
        f"pool: {args.pool_n} uint8 images\n"
    )
    header = (
        f"{'M':>3} {'formulation':<12} {'s/epoch':>8} {'train GF/s':>10} {'%mm':>5} "
        f"{'pool img/s':>10} {'pool GF/s':>9} {'%mm':>5} {'train x':>7} {'pool x':>6}"
    )
    print(header)
    print("-" * len(header))
    for m in args.members:
        results = measure(
            m,
            args.formulations,
            device=args.device,
            train_n=args.train_n,
            pool_n=args.pool_n,
            repeats=args.repeats,
            epochs=args.epochs,
        )
        baseline = results.get("loop-eager") or results.get("loop") or next(iter(results.values()))
        base_epoch, base_pool, _ = baseline
        for formulation, (epoch, images_per_s, flops) in results.items():
            train_gf = 3 * flops * m * args.train_n / epoch / 1e9
            pool_gf = flops * m * images_per_s / 1e9
            label = formulation
            print(
                f"{m:>3} {label:<12} {epoch:>8.3f} {train_gf:>10.1f} "
                f"{100 * train_gf / rate:>4.0f}% "
                f"{images_per_s:>10.0f} {pool_gf:>9.1f} {100 * pool_gf / rate:>4.0f}% "
                f"{base_epoch / epoch:>6.2f}x {images_per_s / base_pool:>5.2f}x"
            )


if __name__ == "__main__":
    main()
