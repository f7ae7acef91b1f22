"""Self-supervised image representation: augmentations, a small conv encoder, NT-Xent training."""

from activelearn.core.representation.augment import AugmentConfig, augment
from activelearn.core.representation.contrastive import (
    RepresentationCancelled,
    RepresentationConfig,
    RepresentationProgress,
    TrainedEncoder,
    embed_images,
    load_encoder,
    nt_xent,
    save_encoder,
    train_encoder,
)
from activelearn.core.representation.encoder import Encoder, EncoderConfig

__all__ = [
    "AugmentConfig",
    "Encoder",
    "EncoderConfig",
    "RepresentationCancelled",
    "RepresentationConfig",
    "RepresentationProgress",
    "TrainedEncoder",
    "augment",
    "embed_images",
    "load_encoder",
    "nt_xent",
    "save_encoder",
    "train_encoder",
]
