"""Project settings: typed, validated, stored as JSON on the project row."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from activelearn.core.learners import DEFAULT_LEARNER, LEARNERS
from activelearn.core.strategies import STRATEGIES
from activelearn.errors import InvalidSetting

# Strategy and learner names come from their registries (both import without torch).
KNOWN_STRATEGIES: tuple[str, ...] = tuple(STRATEGIES)
KNOWN_LEARNERS: tuple[str, ...] = tuple(LEARNERS)
# `backbone`: "hog" (gradient histograms, nothing to train: 95% on the demo from 30 labels,
# benchmarks/label_efficiency.md), "ssl" (HOG joined with an encoder learned on the pool) or
# "torchvision:<architecture>" with local weights (core.representation.backbone; checked here
# without importing torch).
HOG_BACKBONE = "hog"
SSL_BACKBONE = "ssl"
TORCHVISION_BACKBONE = re.compile(r"^torchvision:[a-z][a-z0-9_]*$")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass(frozen=True)
class ProjectSettings:
    strategy: str = "auto"  # a name in activelearn.core.strategies.STRATEGIES
    learner: str = DEFAULT_LEARNER  # a name in activelearn.core.learners.LEARNERS
    backbone: str = HOG_BACKBONE  # hog | ssl | torchvision:<architecture> (representation stage)
    backbone_weights: str = ""  # local weights of a torchvision backbone (never downloaded)
    members: int = 5
    epochs: int = 20
    batch_size: int = 64
    # new labels between automatic rounds; 0 turns it off. 1: an embedding round takes about 2 s
    # on the demo (benchmarks/README.md), so the ranking an annotator sees is one round old.
    retrain_every: int = 1
    audit_share: float = 0.1  # share of served tasks drawn at random and held out for evaluation
    lease_seconds: int = 600
    image_size: int = 28
    channels: int = 1
    seed: int = 0
    early_stopping: bool = False
    augment: bool = False
    class_weighting: bool = False
    acquisition_batch: int = 10  # batch size for batch-aware strategies
    allowed_annotators: tuple[str, ...] = ()  # empty: anyone may label
    # The representation stage (services.representation): contrastive epochs over the pool (20:
    # the demo's 4,000 digits ran at 740 images/s on one loaded CPU core, so about 2 minutes,
    # leaving room for a slower machine under 5), and the share by which the pool must grow
    # after the last representation before it is trained again (0: never).
    ssl_epochs: int = 20
    representation_regrow: float = 0.25
    # True until image_size/channels are set: the first import then picks them from its images.
    auto_image_shape: bool = True

    def validate(self) -> ProjectSettings:
        if self.strategy not in KNOWN_STRATEGIES:
            known = ", ".join(KNOWN_STRATEGIES)
            raise InvalidSetting(f"unknown acquisition strategy {self.strategy!r}; known: {known}")
        if self.learner not in KNOWN_LEARNERS:
            known = ", ".join(KNOWN_LEARNERS)
            raise InvalidSetting(f"unknown learner {self.learner!r}; known: {known}")
        self._validate_backbone()
        checks = [
            (1 <= self.members <= 64, "members must be between 1 and 64"),
            (1 <= self.epochs <= 1000, "epochs must be between 1 and 1000"),
            (1 <= self.batch_size <= 4096, "batch_size must be between 1 and 4096"),
            (self.retrain_every >= 0, "retrain_every must be 0 (off) or a positive number"),
            (0.0 <= self.audit_share < 1.0, "audit_share must be in [0, 1)"),
            (10 <= self.lease_seconds <= 86_400, "lease_seconds must be between 10 and 86400"),
            (8 <= self.image_size <= 256, "image_size must be between 8 and 256"),
            (self.channels in (1, 3), "channels must be 1 (grayscale) or 3 (RGB)"),
            (1 <= self.acquisition_batch <= 1000, "acquisition_batch must be between 1 and 1000"),
            (1 <= self.ssl_epochs <= 1000, "ssl_epochs must be between 1 and 1000"),
            (
                0.0 <= self.representation_regrow <= 100.0,
                "representation_regrow must be between 0 (never retrain) and 100",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidSetting(message)
        return self

    def _validate_backbone(self) -> None:
        if self.backbone in (HOG_BACKBONE, SSL_BACKBONE):
            return
        if not TORCHVISION_BACKBONE.match(self.backbone):
            raise InvalidSetting(
                f"backbone must be {HOG_BACKBONE!r}, {SSL_BACKBONE!r} or "
                "'torchvision:<architecture>' "
                f"(e.g. torchvision:resnet18); got {self.backbone!r}"
            )
        weights = Path(self.backbone_weights)
        if not self.backbone_weights or weights.suffix not in WEIGHT_SUFFIXES:
            raise InvalidSetting(
                "a torchvision backbone needs backbone_weights: a local .safetensors file "
                "(or .pth/.pt, read with torch.load(weights_only=True)); nothing is downloaded"
            )
        if not weights.is_file():
            raise InvalidSetting(f"backbone_weights file not found: {weights}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["allowed_annotators"] = list(self.allowed_annotators)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ProjectSettings:
        """Settings stored on a project row (or given to create_project): unknown keys ignored;
        image_size/channels given by hand are kept (no automatic choice at the first import)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known}
        if "auto_image_shape" not in values and {"image_size", "channels"} & set(values):
            values["auto_image_shape"] = False
        if "allowed_annotators" in values:
            values["allowed_annotators"] = tuple(values["allowed_annotators"] or ())
        return cls(**values)

    def updated(self, **changes: Any) -> ProjectSettings:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidSetting(
                f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "allowed_annotators" in changes:
            changes["allowed_annotators"] = tuple(changes["allowed_annotators"] or ())
        if {"image_size", "channels"} & set(changes):
            changes.setdefault("auto_image_shape", False)  # chosen by hand: kept
        return replace(self, **changes).validate()
