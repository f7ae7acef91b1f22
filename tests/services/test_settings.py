"""Settings validation: learner names from the registry, the backbone and its local weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from activelearn.errors import InvalidSetting
from activelearn.services.settings import KNOWN_LEARNERS, ProjectSettings


def test_learners_come_from_the_registry_and_the_embedding_learner_is_the_default() -> None:
    assert KNOWN_LEARNERS == ("cnn", "embedding")
    assert ProjectSettings().learner == "embedding" and ProjectSettings().strategy == "auto"
    assert ProjectSettings().updated(learner="embedding").learner == "embedding"
    with pytest.raises(InvalidSetting, match="unknown learner 'nope'; known: cnn, embedding"):
        ProjectSettings().updated(learner="nope")


def test_the_typicality_strategies_are_settings() -> None:
    assert ProjectSettings().updated(strategy="typiclust").strategy == "typiclust"
    assert ProjectSettings().updated(strategy="auto").strategy == "auto"


def test_a_torchvision_backbone_needs_local_weights_of_a_safe_kind(tmp_path: Path) -> None:
    base = ProjectSettings()
    assert base.backbone == "hog" and base.backbone_weights == ""
    weights = tmp_path / "resnet18.safetensors"
    weights.write_bytes(b"not read by the validation")
    chosen = base.updated(backbone="torchvision:resnet18", backbone_weights=str(weights))
    assert ProjectSettings.from_json(chosen.to_json()) == chosen  # stored and read back
    (tmp_path / "resnet18.pth").write_bytes(b"")
    base.updated(backbone="torchvision:resnet18", backbone_weights=str(tmp_path / "resnet18.pth"))
    refused = [
        ({"backbone": "imagenet"}, "backbone must be 'hog', 'ssl' or 'torchvision:<arch"),
        ({"backbone": "torchvision:Res Net"}, "backbone must be"),
        ({"backbone": "torchvision:resnet18"}, "needs backbone_weights"),
        (
            {"backbone": "torchvision:resnet18", "backbone_weights": str(tmp_path / "w.pkl")},
            "needs backbone_weights: a local .safetensors",
        ),
        (
            {"backbone": "torchvision:resnet18", "backbone_weights": str(tmp_path / "no.pt")},
            "backbone_weights file not found",
        ),
    ]
    for changes, message in refused:
        with pytest.raises(InvalidSetting, match=message):
            base.updated(**changes)
