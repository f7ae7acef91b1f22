"""Honesty of the uncertainty the tool shows, on the demo split, with no database.

(a) planted label errors: 300 random pool labels, 5% / 10% flipped to another class at random;
    precision = recall of the top-k issues (k = planted), the best recall at precision >= 70%
    along the ranking, and precision / recall of cleanlab's flagged set. Judged out of sample
    (K-fold embedding learner, with and without the pool graph) and, as a baseline, in sample
    (the embedding learner fit on all 300 judging its own labels).
(b) OOD: 100 foreign images (letters, noise, blank, textures) added to the 4,000 pool digits;
    AUROC of ood_score and of its parts over the unlabeled pool, 100 and 300 random digits
    labeled, and how many foreign images are among the 100 highest scores.
(c) calibration on the 1,000 test digits: ECE, NLL and risk at 90% coverage of the embedding
    learner's ensemble against its members at 50/100/300 random labels, and of the ensemble
    with a temperature fitted on K-fold out-of-sample probabilities of its labels.

Features: the SSL encoder of benchmarks/embedding_learner.py joined with a 30-d pixel PCA when
its file exists (data/benchmark_encoder.safetensors, trained on the 4,000 pool digits), else the
pixel PCA alone (printed). In (b) the PCA and the kNN graph are refit on the pool with the
foreign images in it (the encoder is not retrained).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/honesty.py
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from activelearn.core.calibration import fit_temperature, sharpen
from activelearn.core.embedding_learner import EmbeddingLearner, EmbeddingLearnerConfig
from activelearn.core.ensemble import Ensemble, EnsembleConfig
from activelearn.core.knn_graph import build_pool_graph
from activelearn.core.label_issues import (
    out_of_bag_probs,
    out_of_sample_probs,
    rank_label_issues,
    stratified_folds,
)
from activelearn.core.metrics import expected_calibration_error, nll, risk_coverage
from activelearn.core.ood import auroc, ood_scores
from activelearn.core.representation import PixelPCA, embed_images, join_features, load_encoder
from benchmarks.embedding_learner import demo_arrays

N_CLASSES = 10


def foreign_images(count: int, *, seed: int) -> tuple[np.ndarray, list[str]]:
    """(count, 1, 28, 28) uint8 images that are no digit, and their kinds: a quarter each of
    rendered letters (Pillow's default font), uniform noise, blank (constant) images, and
    photo-like textures (smoothed noise, gratings, gradients)."""
    rng = np.random.default_rng(seed)
    letters = "ABCEFHKLMNPRTUVWXYZabdefhkmnrtwxy"
    images, kinds = [], []
    for i in range(count):
        kind = ("letter", "noise", "blank", "texture")[i % 4]
        if kind == "letter":
            canvas = Image.new("L", (28, 28), 0)
            font = ImageFont.load_default(size=int(rng.integers(16, 24)))
            draw = ImageDraw.Draw(canvas)
            draw.text((14, 14), letters[i // 4 % len(letters)], fill=255, font=font, anchor="mm")
            image = np.asarray(canvas)
        elif kind == "noise":
            image = rng.integers(0, 256, (28, 28))
        elif kind == "blank":
            image = np.full((28, 28), rng.choice([0, 0, 128, 255]))
        else:
            style = (i // 4) % 3
            if style == 0:  # smoothed noise: blotches like a blurred photo
                small = rng.random((7, 7))
                image = np.kron(small, np.ones((4, 4))) * 255
            elif style == 1:  # a grating at a random angle and frequency
                yy, xx = np.mgrid[0:28, 0:28]
                angle, freq = rng.random() * np.pi, 0.2 + 0.6 * rng.random()
                image = 127.5 * (1 + np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle))))
            else:  # a gradient with noise
                ramp = np.linspace(0, 255, 28)[None, :] * np.ones((28, 1))
                image = np.clip(ramp + rng.normal(0, 30, (28, 28)), 0, 255)
        images.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
        kinds.append(kind)
    return np.stack(images)[:, None], kinds


def build_features(
    pool_x: np.ndarray, test_x: np.ndarray, encoder_path: Path, pca: int
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Pool and test features (PCA fitted on the pool only) and a description."""
    pixel_pca = PixelPCA.fit(pool_x, n_components=pca)
    pool_f, test_f = pixel_pca.transform(pool_x), pixel_pca.transform(test_x)
    if encoder_path.exists():
        trained = load_encoder(encoder_path)
        pool_f = join_features(torch.from_numpy(embed_images(trained.encoder, pool_x)), pool_f)
        test_f = join_features(torch.from_numpy(embed_images(trained.encoder, test_x)), test_f)
        return pool_f, test_f, f"SSL encoder ({encoder_path}) joined with a {pca}-d pixel PCA"
    unit = torch.nn.functional.normalize
    return (
        unit(pool_f, dim=1),
        unit(test_f, dim=1),
        f"{pca}-d pixel PCA only (no {encoder_path}: fallback)",
    )


def flip_labels(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flip round(fraction * L) labels at random to another class: (noisy labels, (L,) planted)."""
    planted = np.zeros(len(labels), dtype=bool)
    planted[rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)] = True
    noisy = labels.copy()
    for i in np.flatnonzero(planted):
        noisy[i] = rng.choice([c for c in range(N_CLASSES) if c != labels[i]])
    return noisy, planted


def ranking_figures(score: torch.Tensor, flagged: torch.Tensor, planted: np.ndarray) -> dict:
    """Top-k precision (= recall, k planted), best recall at precision >= 0.7, flagged P/R."""
    k = int(planted.sum())
    finite = torch.nan_to_num(score, nan=-1.0)  # unjudged labels rank last
    order = torch.sort(finite, descending=True, stable=True).indices.numpy()
    hits = np.cumsum(planted[order])
    precision = hits / np.arange(1, len(order) + 1)
    recall = hits / k
    ok = precision >= 0.7
    flagged = flagged.numpy()
    return {
        "top_k": hits[k - 1] / k,
        "recall_at_p70": float(recall[ok].max()) if ok.any() else 0.0,
        "flag_p": (flagged & planted).sum() / max(flagged.sum(), 1),
        "flag_r": (flagged & planted).sum() / k,
        "flagged": int(flagged.sum()),
    }


def planted_errors(
    pool_f: torch.Tensor, pool_y: np.ndarray, graph, *, labels: int, repeats: int, folds: int
) -> list[str]:
    learner = EmbeddingLearner(EmbeddingLearnerConfig())
    variants = ("K-fold heads + pool graph", "K-fold heads only", "in-sample (baseline)")
    rows = []
    for fraction in (0.05, 0.10):
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for repeat in range(repeats):
            rng = np.random.default_rng(100 + repeat)
            index = rng.choice(len(pool_y), size=labels, replace=False)
            noisy, planted = flip_labels(pool_y[index], fraction, rng)
            x = pool_f[index]
            for variant in variants:
                if variant == "in-sample (baseline)":
                    model = learner.fit(
                        x, noisy, n_classes=N_CLASSES, seed=repeat, pool=graph, pool_index=index
                    )
                    probs = model.predict_proba(x).mean(0).double()
                else:
                    with_pool = variant == "K-fold heads + pool graph"
                    probs = out_of_sample_probs(
                        x,
                        noisy,
                        n_classes=N_CLASSES,
                        folds=folds,
                        seed=repeat,
                        learner=learner,
                        pool=graph if with_pool else None,
                        pool_index=index if with_pool else None,
                    )
                issues = rank_label_issues(noisy, probs)
                results[variant].append(ranking_figures(issues.score, issues.flagged, planted))
        for variant in variants:
            r = results[variant]
            mean = {key: float(np.mean([x[key] for x in r])) for key in r[0]}
            each = "/".join(f"{x['top_k']:.2f}" for x in r)
            met = sum(x["recall_at_p70"] >= 0.9 for x in r)
            rows.append(
                f"| {fraction:.0%} ({round(fraction * labels)}) | {variant} | "
                f"{mean['top_k']:.3f} ({each}) | "
                f"{mean['recall_at_p70']:.3f} | {met}/{len(r)} | "
                f"{mean['flag_p']:.3f} | {mean['flag_r']:.3f} | "
                f"{mean['flagged']:.1f} |"
            )
            print(rows[-1], flush=True)
    header = [
        "| planted | judged by | top-k precision = recall (per repeat) | recall at P>=70% | "
        "repeats with recall >= 90% at P >= 70% | flagged precision | flagged recall | "
        "flagged (n) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return header + rows


def cnn_planted_errors(
    pool_x: np.ndarray, pool_y: np.ndarray, *, labels: int, repeats: int, folds: int, epochs: int
) -> list[str]:
    """(a) for the CNN ensemble (M = 5): in sample (the round's judgement so far), K-fold, and
    out of bag (5 one-member ensembles on bootstrap samples of the labels)."""
    members = 5
    config = EnsembleConfig(members=members, epochs=epochs, device="cpu")

    def fit(x: np.ndarray, y: np.ndarray, cfg: EnsembleConfig) -> Ensemble:
        model = Ensemble(cfg, in_channels=1, n_classes=N_CLASSES, image_size=28)
        model.fit(torch.from_numpy(x), torch.from_numpy(y))
        return model

    rows = []
    for fraction in (0.05, 0.10):
        for repeat in range(repeats):
            rng = np.random.default_rng(100 + repeat)  # the same draws as the embedding learner
            index = rng.choice(len(pool_y), size=labels, replace=False)
            noisy, planted = flip_labels(pool_y[index], fraction, rng)
            x = pool_x[index]
            judged: dict[str, torch.Tensor] = {}
            started = time.perf_counter()
            model = fit(x, noisy, replace(config, seed=repeat))
            judged["CNN in-sample (the round so far)"] = model.predict_proba(x).mean(0).double()
            fold = stratified_folds(noisy, folds, seed=repeat).numpy()
            probs = torch.full((labels, N_CLASSES), float("nan"), dtype=torch.float64)
            for f in range(folds):
                held = fold == f
                model = fit(x[~held], noisy[~held], replace(config, seed=repeat * 100 + f))
                probs[held] = model.predict_proba(x[held]).mean(0).double()
            judged[f"CNN K-fold (K={folds})"] = probs
            in_bag = np.zeros((members, labels), dtype=bool)
            member_probs = []
            for m in range(members):
                boot = rng.integers(0, labels, size=labels)
                in_bag[m, boot] = True
                one = replace(config, members=1, seed=repeat * 100 + 50 + m)
                member_probs.append(fit(x[boot], noisy[boot], one).predict_proba(x)[0])
            oob = out_of_bag_probs(torch.stack(member_probs), torch.from_numpy(in_bag))
            judged[f"CNN out-of-bag ({members} bootstrap members)"] = oob
            for name, probs in judged.items():
                issues = rank_label_issues(noisy, probs)
                f = ranking_figures(issues.score, issues.flagged, planted)
                unjudged = int((~issues.judged).sum())
                rows.append(
                    f"| {fraction:.0%} ({int(planted.sum())}) | {repeat} | {name} | "
                    f"{f['top_k']:.3f} | {f['recall_at_p70']:.3f} | {f['flag_p']:.3f} | "
                    f"{f['flag_r']:.3f} | {f['flagged']} | {unjudged} |"
                )
                print(rows[-1], flush=True)
            print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    header = [
        "| planted | repeat | judged by | top-k precision = recall | recall at P>=70% | "
        "flagged precision | flagged recall | flagged (n) | unjudged labels |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return header + rows


def ood_benchmark(
    digits: np.ndarray,
    labels: np.ndarray,
    is_test: np.ndarray,
    encoder_path: Path,
    *,
    pca: int,
    k_graph: int,
    label_counts: tuple[int, ...],
    repeats: int,
    knn_k: int,
) -> list[str]:
    foreign, kinds = foreign_images(100, seed=7)
    pool_x = np.concatenate([digits[~is_test], foreign])
    pool_y = labels[~is_test]
    is_ood = np.r_[np.zeros(len(pool_y), dtype=bool), np.ones(len(foreign), dtype=bool)]
    kind_of_all = np.array(["digit"] * len(pool_y) + kinds)
    pool_f, _, _ = build_features(pool_x, digits[is_test], encoder_path, pca)
    graph = build_pool_graph(pool_f, k=k_graph)
    learner = EmbeddingLearner(EmbeddingLearnerConfig())
    names = (
        "**ood_score** (default: rank mean of kNN + entropy)",
        "rank mean of kNN + entropy + MI",
        f"kNN distance to labeled (k={knn_k})",
        "predictive entropy",
        "mutual information (MI)",
    )
    columns = ("all", *sorted(set(kinds)))
    rows = [
        "| labels | score | "
        + " | ".join(f"AUROC {c}" for c in columns)
        + " | foreign in top 100 |",
        "|---" * (3 + len(columns)) + "|",
    ]
    for n_labels in label_counts:
        found: dict[str, list[list[float]]] = {n: [] for n in names}
        for repeat in range(repeats):
            rng = np.random.default_rng(200 + repeat)
            index = rng.choice(len(pool_y), size=n_labels, replace=False)  # digits only
            model = learner.fit(
                pool_f[index], pool_y[index], n_classes=N_CLASSES, seed=repeat, pool=graph,
                pool_index=index,
            )  # fmt: skip
            probs = model.predict_pool(graph)
            unlabeled = np.setdiff1d(np.arange(len(pool_x)), index)
            s = ood_scores(pool_f[unlabeled], pool_f[index], probs=probs[:, unlabeled], k=knn_k)
            every = ood_scores(
                pool_f[unlabeled], pool_f[index], probs=probs[:, unlabeled], k=knn_k,
                parts=("knn", "entropy", "disagreement"),
            )  # fmt: skip
            parts = (s.score, every.score, s.knn_distance, s.entropy, s.disagreement)
            values = dict(zip(names, parts, strict=True))
            truth, kind_of = is_ood[unlabeled], kind_of_all[unlabeled]
            for name, value in values.items():
                figures = []
                for column in columns:
                    keep = ~truth | (truth if column == "all" else kind_of == column)
                    figures.append(auroc(value[keep], truth[keep]))
                top = torch.sort(value, descending=True, stable=True).indices[:100].numpy()
                figures.append(float(truth[top].sum()))
                found[name].append(figures)
        for name in names:
            mean = np.mean(found[name], axis=0)
            cells = [f"{x:.3f}" for x in mean[:-1]] + [f"{mean[-1]:.0f}"]
            rows.append(f"| {n_labels} | {name} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    return rows


def calibration(
    pool_f: torch.Tensor,
    pool_y: np.ndarray,
    test_f: torch.Tensor,
    test_y: np.ndarray,
    graph,
    *,
    repeats: int,
    folds: int,
) -> list[str]:
    """Ensemble (member mean) against its members on the test digits. "best member" is the
    member with the lowest test figure, picked on the test set itself (optimistic for it);
    "mean member" averages the members' figures. "+ T fitted" divides the ensemble's log
    probabilities by a temperature fitted (NLL) on K-fold out-of-sample probabilities of the
    labeled set: no test label is used."""
    learner = EmbeddingLearner(EmbeddingLearnerConfig())
    y = torch.as_tensor(test_y)
    columns = ("ECE", "NLL", "risk@90%")
    rows = [
        "| labels | predictor | ECE | NLL | risk@90% | confidence - accuracy | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for n_labels in (50, 100, 300):
        figures: dict[str, list[list[float]]] = {}
        for repeat in range(repeats):
            rng = np.random.default_rng(300 + repeat)
            index = rng.choice(len(pool_y), size=n_labels, replace=False)
            model = learner.fit(
                pool_f[index], pool_y[index], n_classes=N_CLASSES, seed=repeat, pool=graph,
                pool_index=index,
            )  # fmt: skip
            member_probs = model.predict_proba(test_f).double()  # (M, N, C)
            held_out = out_of_sample_probs(
                pool_f[index], pool_y[index], n_classes=N_CLASSES, folds=folds, seed=repeat,
                learner=learner, pool=graph, pool_index=index,
            )  # fmt: skip
            judged = ~torch.isnan(held_out).any(1)
            temperature = fit_temperature(held_out[judged], torch.as_tensor(pool_y[index])[judged])
            mean = member_probs.mean(0)
            predictors = {
                "ensemble": [mean],
                f"ensemble + T fitted (T={temperature:.2f})": [sharpen(mean, temperature)],
                "best member": list(member_probs),
                "mean member": list(member_probs),
            }
            for name, candidates in predictors.items():
                each = [describe(p, y) for p in candidates]
                pick = np.mean if name == "mean member" else np.min
                key = name.split(" (T=")[0]
                figures.setdefault(key, []).append(
                    [float(pick([e[c] for e in each])) for c in columns]
                    + [float(np.mean([e[c] for e in each])) for c in ("gap", "accuracy")]
                )
        for name, values in figures.items():
            m = np.mean(values, axis=0)
            rows.append(
                f"| {n_labels} | {name} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:+.3f} | "
                f"{m[4]:.3f} |"
            )
            print(rows[-1], flush=True)
    return rows


def describe(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """ECE, NLL, risk at 90% coverage, mean confidence - accuracy, accuracy of (N, C) probs."""
    confidence, predicted = probs.max(1)
    accuracy = float((predicted == y).double().mean())
    return {
        "ECE": expected_calibration_error(probs, y)[0],
        "NLL": nll(probs, y),
        "risk@90%": risk_at_coverage(probs, y, 0.9),
        "gap": float(confidence.mean()) - accuracy,
        "accuracy": accuracy,
    }


def risk_at_coverage(probs: torch.Tensor, y: torch.Tensor, coverage: float) -> float:
    """Error rate among the most confident share `coverage` (the first curve point >= it)."""
    confidence, predicted = probs.max(1)
    covered, risk, _ = risk_coverage(confidence, predicted == y)
    return float(risk[torch.nonzero(covered >= coverage - 1e-6).flatten()[0]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder", type=Path, default=Path("data/benchmark_encoder.safetensors"))
    parser.add_argument("--pca", type=int, default=30)
    parser.add_argument("--k", type=int, default=5, help="neighbours per node in the pool graph")
    parser.add_argument("--knn-k", type=int, default=1, help="k of the OOD kNN distance")
    parser.add_argument("--labels", type=int, default=300)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cnn-epochs", type=int, default=20)
    parser.add_argument(
        "--part",
        action="append",
        choices=("errors", "ood", "calibration", "cnn-errors"),
        help="default: errors, ood, calibration (cnn-errors: minutes per repeat on a CPU)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.part or ["errors", "ood", "calibration"]

    started = time.perf_counter()
    digits, labels, is_test = demo_arrays()
    pool_x, pool_y = digits[~is_test], labels[~is_test]
    pool_f, test_f, described = build_features(pool_x, digits[is_test], args.encoder, args.pca)
    graph = build_pool_graph(pool_f, k=args.k)
    print(f"features: {described}; pool graph k={args.k}", flush=True)
    out = [f"Features: {described}. Repeats: {args.repeats} (mean shown).", ""]
    if "errors" in parts:
        print("(a) planted label errors", flush=True)
        out += ["### (a) Planted label errors", ""]
        out += planted_errors(
            pool_f, pool_y, graph, labels=args.labels, repeats=args.repeats, folds=args.folds
        )
        out.append("")
    if "cnn-errors" in parts:
        print("(a) planted label errors, CNN ensemble", flush=True)
        out += [f"### (a) Planted label errors, CNN ensemble (M = 5, {args.cnn_epochs} epochs)", ""]
        out += cnn_planted_errors(
            pool_x, pool_y, labels=args.labels, repeats=args.repeats, folds=args.folds,
            epochs=args.cnn_epochs,
        )  # fmt: skip
        out.append("")
    if "ood" in parts:
        print("(b) OOD", flush=True)
        out += ["### (b) OOD: 100 foreign images in the pool", ""]
        out += ood_benchmark(
            digits, labels, is_test, args.encoder, pca=args.pca, k_graph=args.k,
            label_counts=(100, args.labels), repeats=args.repeats, knn_k=args.knn_k,
        )  # fmt: skip
        out.append("")
    if "calibration" in parts:
        print("(c) calibration", flush=True)
        out += ["### (c) Calibration on the 1,000 test digits (embedding learner, M = 5)", ""]
        out += calibration(
            pool_f, pool_y, test_f, labels[is_test], graph, repeats=args.repeats, folds=args.folds
        )
        out.append("")
    print("\n".join(out))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
