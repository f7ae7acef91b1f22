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
from activelearn.core.representation.features import PixelPCA, join_features

__all__ = [
    "AugmentConfig",
    "Encoder",
    "EncoderConfig",
    "PixelPCA",
    "RepresentationCancelled",
    "RepresentationConfig",
    "RepresentationProgress",
    "TrainedEncoder",
    "augment",
    "embed_images",
    "join_features",
    "load_encoder",
    "nt_xent",
    "save_encoder",
    "train_encoder",
]
