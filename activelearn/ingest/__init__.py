"""Everything that touches untrusted files: decode, validate, dedupe, cache."""

from activelearn.ingest.cache import CacheMissing, TensorCache
from activelearn.ingest.decode import (
    ALLOWED_FORMATS,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    DecodedImage,
    ImageRejected,
    decode_image,
)
from activelearn.ingest.demo import DEMO_CLASSES, demo_images
from activelearn.ingest.sources import (
    SourceError,
    SourceItem,
    SourceScan,
    scan_folder,
    scan_manifest,
    scan_source,
    scan_zip,
)

__all__ = [
    "ALLOWED_FORMATS",
    "DEMO_CLASSES",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "CacheMissing",
    "DecodedImage",
    "ImageRejected",
    "SourceError",
    "SourceItem",
    "SourceScan",
    "TensorCache",
    "decode_image",
    "demo_images",
    "scan_folder",
    "scan_manifest",
    "scan_source",
    "scan_zip",
]
