"""Pool image representation: HOG, pixel PCA and a self-supervised encoder, joined by
`build_features` (the representation stage) into one fitted `FeaturePipeline`."""

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
from activelearn.core.representation.hog import HogConfig, hog
from activelearn.core.representation.pipeline import FeatureConfig, FeaturePipeline, build_features

__all__ = [
    "AugmentConfig",
    "Encoder",
    "EncoderConfig",
    "FeatureConfig",
    "FeaturePipeline",
    "HogConfig",
    "PixelPCA",
    "RepresentationCancelled",
    "RepresentationConfig",
    "RepresentationProgress",
    "TrainedEncoder",
    "augment",
    "build_features",
    "embed_images",
    "hog",
    "join_features",
    "load_encoder",
    "nt_xent",
    "save_encoder",
    "train_encoder",
]
