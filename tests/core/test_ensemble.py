"""The vectorized ensemble: equivalence with members trained alone, I/O, validation, devices."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits

from activelearn.core.ensemble import (
    FORMULATIONS,
    Ensemble,
    EnsembleConfig,
    FitProgress,
    member_seed,
)

SMALL = EnsembleConfig(
    members=3, epochs=2, batch_size=16, seed=7, device="cpu", widths=(8, 16), hidden=32
)


@cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    return x, torch.tensor(digits.target)


def _small(config: EnsembleConfig = SMALL, **kw) -> Ensemble:
    return Ensemble(replace(config, **kw), in_channels=1, n_classes=10, image_size=8)


@pytest.mark.parametrize("formulation", [f for f in FORMULATIONS if f != "auto"])
def test_member_in_ensemble_equals_member_trained_alone(formulation: str) -> None:
    x, y = _digits()
    x, y = x[:64], y[:64]
    config = replace(SMALL, augment=True, dropout=0.2, class_weighting=True)
    ensemble = _small(config, formulation=formulation)
    ensemble.fit(x, y)
    together = ensemble.predict_proba(x[:50])
    for member in (2,):
        alone = Ensemble(config.for_member(member), in_channels=1, n_classes=10, image_size=8)
        alone.fit(x, y)
        torch.testing.assert_close(
            alone.predict_proba(x[:50])[0], together[member], atol=2e-5, rtol=1e-4
        )
    # Different seeds give different members.
    assert (together[0] - together[1]).abs().max() > 1e-2


def test_formulations_agree() -> None:
    x, y = _digits()
    probs = {}
    for formulation in ("grouped", "hybrid", "loop"):
        ensemble = _small(formulation=formulation, epochs=1)
        ensemble.fit(x[:64], y[:64])
        probs[formulation] = ensemble.predict_proba(x[64:128])
    torch.testing.assert_close(probs["grouped"], probs["loop"], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(probs["hybrid"], probs["loop"], atol=2e-5, rtol=1e-4)


def test_member_seeds_and_for_member() -> None:
    config = EnsembleConfig(members=4, seed=3)
    seeds = [config.member_seed(i) for i in range(4)]
    assert seeds == [member_seed(3, i) for i in range(4)] and len(set(seeds)) == 4
    alone = config.for_member(2)
    assert alone.members == 1 and alone.member_seed(0) == seeds[2]
    assert EnsembleConfig(members=2, member_seeds=(5, 6)).member_seed(1) == 6
    with pytest.raises(ValueError, match="member_seeds"):
        EnsembleConfig(members=2, member_seeds=(1,))


def test_fit_is_reproducible_and_seed_dependent() -> None:
    x, y = _digits()
    a, b, c = _small(epochs=1), _small(epochs=1), _small(epochs=1, seed=8)
    for ensemble in (a, b, c):
        ensemble.fit(x[:64], y[:64])
    assert torch.equal(a.predict_proba(x[:32]), b.predict_proba(x[:32]))
    assert not torch.allclose(a.predict_proba(x[:32]), c.predict_proba(x[:32]))


def test_predict_shape_and_simplex() -> None:
    x, _ = _digits()
    probs = _small().predict_proba(x[:37], chunk_size=10)
    assert probs.shape == (3, 37, 10) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 37))
    assert _small().predict_proba(x[:0]).shape == (3, 0, 10)


def test_uint8_and_resized_inputs() -> None:
    x, y = _digits()
    as_uint8 = (x[:40] * 255).round().to(torch.uint8)
    ensemble = _small(epochs=1)
    ensemble.fit(as_uint8, y[:40])
    torch.testing.assert_close(
        ensemble.predict_proba(as_uint8), ensemble.predict_proba(as_uint8.float() / 255)
    )
    rgb = Ensemble(replace(SMALL, epochs=1), in_channels=3, n_classes=4, image_size=12)
    images = torch.rand(10, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    rgb.fit(images, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1]))
    assert rgb.predict_proba(images).shape == (3, 10, 4)


def test_tiny_labeled_set_and_missing_classes() -> None:
    x, y = _digits()
    idx = torch.cat([torch.nonzero(y == c).flatten()[:2] for c in range(3)])  # 2 per class, 3 of 10
    history = _small(early_stopping=True, epochs=3).fit(x[idx], y[idx])
    assert history.epochs_run == 3 and history.val_loss is None  # too few labels to hold out
    assert len(history.train_loss) == 3 and all(len(t) == 3 for t in history.train_loss)
    assert all(torch.isfinite(torch.tensor(t)).all() for t in history.train_loss)
    _small(class_weighting=True, epochs=1).fit(x[idx], y[idx])


def test_early_stopping_keeps_best_validation_weights() -> None:
    x, y = _digits()
    ensemble = _small(early_stopping=True, epochs=8, patience=2, lr=3e-2, val_fraction=0.2)
    history = ensemble.fit(x[:120], y[:120])
    assert history.val_loss is not None and history.best_epoch is not None
    assert history.epochs_run <= 8
    for member in range(3):
        losses = history.val_loss[member]
        assert min(losses) == losses[history.best_epoch[member] - 1]


def test_progress_is_reported_and_can_cancel() -> None:
    x, y = _digits()
    events: list[FitProgress] = []
    ensemble = _small(epochs=2, progress_every=2)
    ensemble.fit(x[:100], y[:100], progress=events.append)
    steps = 7  # ceil(100 / 16)
    assert {(e.epoch, e.step) for e in events} == {
        (epoch, step) for epoch in (1, 2) for step in (2, 4, 6, 7)
    }
    assert all(e.steps == steps and e.epochs == 2 and len(e.losses) == 3 for e in events)

    class Cancelled(Exception):
        pass

    def cancel(event: FitProgress) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        ensemble.fit(x[:100], y[:100], progress=cancel)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2]), "samples"),
        (torch.rand(3, 8, 8), torch.tensor([0, 1, 2]), "shape"),
        (torch.rand(3, 2, 8, 8), torch.tensor([0, 1, 2]), "channels"),
        (torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 10]), "labels must be in"),
        (torch.rand(3, 1, 8, 8), torch.tensor([0.0, 1.0, 2.0]), "integer"),
        (torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), "empty"),
        (torch.full((2, 1, 8, 8), float("nan")), torch.tensor([0, 1]), "NaN"),
    ],
)
def test_bad_inputs_raise_value_error(x: torch.Tensor, y: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _small().fit(x, y)


def test_bad_config_lists_problems() -> None:
    with pytest.raises(ValueError, match=r"members must be >= 1.*epochs must be >= 1"):
        EnsembleConfig(members=0, epochs=0)
    with pytest.raises(ValueError, match="device"):
        EnsembleConfig(device="tpu")


def test_save_load_round_trip_compares_every_tensor(tmp_path: Path) -> None:
    x, y = _digits()
    ensemble = _small(epochs=1, dropout=0.1)
    ensemble.fit(x[:64], y[:64])
    ensemble.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = Ensemble.load(tmp_path / "ckpt", device="cpu")
    assert loaded.config == ensemble.config
    assert (loaded.in_channels, loaded.n_classes, loaded.image_size) == (1, 10, 8)
    assert loaded.fitted
    original, restored = ensemble.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for name in original:
        assert torch.equal(original[name], restored[name]), name
    assert torch.equal(loaded.predict_proba(x[:20]), ensemble.predict_proba(x[:20]))
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["architecture"] == "small_cnn.v1"


def test_load_rejects_mismatched_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Ensemble.load(tmp_path / "missing")
    _small().save(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    meta["config"]["members"] = 4
    meta["config"]["member_seeds"] = None
    (tmp_path / "a" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match"):
        Ensemble.load(tmp_path / "a")


def test_warm_start_continues_training() -> None:
    x, y = _digits()
    ensemble = _small(epochs=1, warm_start=True)
    first = ensemble.fit(x[:128], y[:128]).train_loss[0][0]
    second = ensemble.fit(x[:128], y[:128]).train_loss[0][0]
    assert second < first


@pytest.mark.slow
def test_default_ensemble_learns_digits_at_28px() -> None:
    x, y = _digits()
    ensemble = Ensemble(
        EnsembleConfig(members=3, epochs=4, device="cpu"),
        in_channels=1,
        n_classes=10,
        image_size=28,
    )
    ensemble.fit(x[:1000], y[:1000])
    accuracy = (ensemble.predict_proba(x[1000:]).mean(0).argmax(-1) == y[1000:]).float().mean()
    assert accuracy > 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_cuda_matches_cpu(formulation: str) -> None:
    x, y = _digits()
    results = {}
    for device in ("cpu", "cuda"):
        ensemble = _small(device=device, formulation=formulation, augment=True, dropout=0.2)
        ensemble.fit(x[:100], y[:100])
        results[device] = ensemble.predict_proba(x[:50])
    torch.testing.assert_close(results["cuda"], results["cpu"], atol=1e-3, rtol=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mixed_precision_trains() -> None:
    x, y = _digits()
    ensemble = _small(device="cuda", mixed_precision=True, epochs=3)
    history = ensemble.fit(x[:300], y[:300])
    assert history.train_loss[0][-1] < history.train_loss[0][0]
    assert torch.isfinite(ensemble.predict_proba(x[:10])).all()


def test_cuda_graphs_setting_changes_nothing_on_cpu() -> None:
    x, y = _digits()
    graphed = _small(cuda_graphs=True)
    eager = _small(cuda_graphs=False)
    history = graphed.fit(x[:150], y[:150])
    eager.fit(x[:150], y[:150])
    assert history.graph_replays == 0
    torch.testing.assert_close(graphed.predict_proba(x[:40]), eager.predict_proba(x[:40]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    ("n", "extra", "replays"),
    [
        # 150 = 2 full batches of 64 + 22: 2 x 3 epochs of full steps, 3 of them warm-up
        (150, {}, 3),
        (150, {"augment": True, "dropout": 0.2, "class_weighting": True}, 3),
        # fewer labels than one batch: every step has the same size, all but 3 replayed
        (20, {"epochs": 10}, 7),
        # early stopping holds out 15 of 150: 135 = 2 full batches + 7
        (150, {"early_stopping": True, "epochs": 4}, None),
    ],
)
def test_cuda_graph_steps_equal_eager_steps(n: int, extra: dict, replays: int | None) -> None:
    x, y = _digits()
    results = {}
    for graphs in (True, False):
        settings = {"batch_size": 64, "epochs": 3, **extra}
        ensemble = _small(device="cuda", formulation="grouped", cuda_graphs=graphs, **settings)
        history = ensemble.fit(x[:n], y[:n])
        if graphs:
            assert history.graph_replays > 0
            if replays is not None:
                assert history.graph_replays == replays
        else:
            assert history.graph_replays == 0
        results[graphs] = (ensemble.predict_proba(x[:60]), history.train_loss)
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-4, rtol=1e-3)
    for graphed, eager in zip(results[True][1], results[False][1], strict=True):
        assert graphed == pytest.approx(eager, rel=1e-3, abs=1e-4)
