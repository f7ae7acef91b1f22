"""Decode untrusted image bytes into a fixed-size uint8 tensor, or reject them with a plain reason.

The file type is decided by decoding the content with an explicit list of Pillow formats, never by
the file name. Every failure, whatever Pillow raises inside, leaves this module as ImageRejected.

Conversion choices (the same for every format, so a model sees one kind of input):
- palette and 1-bit images become RGB(A) / L; CMYK, YCbCr, LAB, HSV become RGB;
- 16-bit images are scaled to 8 bits (v * 255 / 65535), never clipped;
- transparency is composited over a BLACK background (digits and sketches are light-on-dark);
- colour becomes luminance ("L", ITU-R 601-2) when channels == 1;
- only the first frame of an animated GIF/PNG/WebP or multi-page TIFF is used;
- the EXIF orientation is applied, and width/height are reported as the image is displayed;
- the image is scaled to fit image_size x image_size keeping its aspect ratio (Lanczos when
  shrinking, bicubic when enlarging), centred, and padded with BLACK to a square.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import ExifTags, Image, ImageOps

MAX_PIXELS: int = 40_000_000
MAX_FILE_BYTES: int = 50 * 2**20
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")

_CORRUPT = "truncated or corrupt image"
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Orientations 5-8 turn the image by a quarter: the displayed width is the stored height.
_QUARTER_TURN_ORIENTATIONS = (5, 6, 7, 8)


class ImageRejected(Exception):
    """A file that will not be imported; .reason is short and plain, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# eq=False: an ndarray field makes generated == and hash() meaningless; identity is enough.
@dataclass(frozen=True, eq=False)
class DecodedImage:
    sha256: str  # hex digest of the raw file bytes (the dedupe key)
    width: int  # size before resizing, as displayed (after EXIF orientation)
    height: int
    format: str  # "PNG", "JPEG", ... as decoded
    pixels: np.ndarray  # (channels, image_size, image_size) uint8, C-contiguous


def decode_image(
    data: bytes,
    *,
    image_size: int = 28,
    channels: int = 1,
    max_pixels: int = MAX_PIXELS,
) -> DecodedImage:
    """Decode, normalise and resize one image file's bytes; raise ImageRejected if unusable.

    The pixel-count check reads the size from the header before any pixel is decoded. Pillow's own
    limit (Image.MAX_IMAGE_PIXELS) is turned into an error too, so the effective limit is the
    smaller of the two.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    data = bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageRejected(
            f"file too large: {_mebibytes(len(data))} (limit {_mebibytes(MAX_FILE_BYTES)})"
        )
    unsupported = _unsupported_format(data)
    if unsupported is not None:
        raise ImageRejected(f"unsupported format: {unsupported}")

    try:
        # catch_warnings touches process-wide state; if two threads race here the worst outcome
        # is the bomb warning staying an error, or staying a warning while the explicit size
        # check below still rejects the image. Pillow's other warnings about broken metadata
        # in untrusted files are noise, hence "ignore".
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data), formats=ALLOWED_FORMATS) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    raise ImageRejected(_CORRUPT)
                if width * height > max_pixels:
                    raise ImageRejected(_too_large(width * height, max_pixels))
                image_format = str(image.format)
                if image_format == "JPEG":
                    # Decode at 1/2, 1/4 or 1/8 scale when that still leaves >= 2x the target:
                    # a 12-megapixel photo then costs a fraction of a full decode.
                    image.draft(None, (2 * image_size, 2 * image_size))
                image.load()
                upright = _upright(image)
                if upright is not image and _orientation(image) in _QUARTER_TURN_ORIENTATIONS:
                    width, height = height, width
                pixels = _to_tensor(upright, image_size=image_size, channels=channels)
    except ImageRejected:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageRejected(_too_large_from_pillow(str(error), max_pixels)) from error
    except Image.UnidentifiedImageError as error:
        # A known signature that Pillow still cannot open is a damaged file, not a text file.
        reason = _CORRUPT if _allowed_signature(data) else "not an image"
        raise ImageRejected(reason) from error
    except MemoryError as error:
        raise ImageRejected("image too large to decode (out of memory)") from error
    except Exception as error:  # untrusted input: any decoder failure is a rejection
        raise ImageRejected(_CORRUPT) from error
    return DecodedImage(
        sha256=digest, width=width, height=height, format=image_format, pixels=pixels
    )


IMAGE_SIZES = (28, 32, 48, 64)  # what an automatic choice picks from (training cost ~ size^2)
COLOR_TOLERANCE = 8  # channel differences up to this count as gray (JPEG noise)


@dataclass(frozen=True)
class ImageShape:
    image_size: int
    channels: int


def choose_image_shape(images: list[DecodedImage]) -> ImageShape:
    """A sensible image_size and channels for a project from a sample of its images, decoded
    with channels=3: color when any image has color; the smallest of IMAGE_SIZES at least the
    median short side (capped at 64 px), so 28 px digits stay 28 and photos get 64."""
    if not images:
        return ImageShape(image_size=IMAGE_SIZES[0], channels=1)
    color = any(
        int(np.abs(image.pixels.astype(np.int16) - image.pixels[:1]).max()) > COLOR_TOLERANCE
        for image in images
        if image.pixels.shape[0] == 3
    )
    short = float(np.median([min(image.width, image.height) for image in images]))
    size = next((s for s in IMAGE_SIZES if s >= min(short, IMAGE_SIZES[-1])), IMAGE_SIZES[-1])
    return ImageShape(image_size=size, channels=3 if color else 1)


def _to_tensor(image: Image.Image, *, image_size: int, channels: int) -> np.ndarray:
    """-> (channels, image_size, image_size) uint8, C-contiguous."""
    array = _to_eight_bit(image)  # (H, W) or (H, W, 3) uint8, alpha already composited
    flat = Image.fromarray(array)
    if channels == 1 and flat.mode == "RGB":
        flat = flat.convert("L")
    square = _fit_square(flat, image_size)
    result = np.asarray(square)
    if result.ndim == 2:
        result = np.repeat(result[np.newaxis], channels, axis=0)  # (C, S, S)
    else:
        result = result.transpose(2, 0, 1)  # (S, S, 3) -> (3, S, S)
    return np.array(result, dtype=np.uint8, order="C")


def _to_eight_bit(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W) or (H, W, 3) uint8, transparency composited over black."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _scale_to_eight_bit(np.asarray(image), mode)
    if mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA", "RGBa"):
        image = image.convert("RGBA")  # also applies a palette's tRNS transparency
    elif mode == "La":
        image = image.convert("LA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    array = np.asarray(image)
    if image.mode in ("LA", "RGBA"):
        # Over black, compositing is the colour times alpha: c * a / 255, rounded.
        alpha = array[..., -1:].astype(np.uint16)
        colour = array[..., :-1].astype(np.uint16)
        array = ((colour * alpha + 127) // 255).astype(np.uint8)
        if array.shape[-1] == 1:
            array = array[..., 0]
    return array


def _scale_to_eight_bit(values: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) 16-bit, 32-bit integer or float values -> (H, W) uint8, scaled, never clipped."""
    if mode in _SIXTEEN_BIT_MODES:
        wide = values.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    floats = values.astype(np.float64)
    finite = np.isfinite(floats)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low = float(floats[finite].min())
    high = float(floats[finite].max())
    if mode == "I" and low >= 0 and high <= 255:
        scaled = floats  # 8-bit data stored in a 32-bit container
    elif mode == "I" and low >= 0 and high <= 65535:
        scaled = floats * 255 / 65535  # 16-bit data widened to 32 bits (e.g. some PNG/TIFF)
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = floats * 255
    elif high > low:
        scaled = (floats - low) * 255 / (high - low)  # anything else: stretch the used range
    else:
        scaled = np.zeros_like(floats)
    scaled = np.where(finite, scaled, 0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _fit_square(image: Image.Image, size: int) -> Image.Image:
    """Scale to fit size x size keeping the aspect ratio, centre, pad with black."""
    width, height = image.size
    scale = size / max(width, height)
    new_width = min(size, max(1, round(width * scale)))
    new_height = min(size, max(1, round(height * scale)))
    if (new_width, new_height) != (width, height):
        if scale < 1:
            # reducing_gap: a cheap box reduction first, then Lanczos for the last factor of 3.
            image = image.resize(
                (new_width, new_height), Image.Resampling.LANCZOS, reducing_gap=3.0
            )
        else:
            image = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
    if image.size == (size, size):
        return image
    canvas = Image.new(image.mode, (size, size), 0)
    canvas.paste(image, ((size - new_width) // 2, (size - new_height) // 2))
    return canvas


def displayable(image: Image.Image) -> Image.Image:
    """The image as a person should see it, converted the way the model's input is: EXIF
    orientation applied, 8-bit L or RGB, 16-bit scaled, transparency over black."""
    return Image.fromarray(_to_eight_bit(_upright(image)))


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; the same object when nothing was done."""
    if _orientation(image) == 1:
        return image
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block: keep the pixels as stored
        return image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
        return int(value)
    except Exception:  # unreadable EXIF: treat as upright
        return 1


def _too_large(pixels: int, limit: int) -> str:
    return f"image too large: {pixels:,} pixels (limit {limit:,})"


def _too_large_from_pillow(message: str, limit: int) -> str:
    # Pillow: "Image size (100000000 pixels) exceeds limit of 89478485 pixels, ..."
    match = re.search(r"\((\d+) pixels\)", message)
    if match is None:
        return f"image too large (limit {limit:,} pixels)"
    return _too_large(int(match.group(1)), min(limit, Image.MAX_IMAGE_PIXELS or limit))


def _mebibytes(size: int) -> str:
    if size % 2**20 == 0:
        return f"{size // 2**20} MiB"
    # Rounded up, so a file just over the limit never reads as equal to it.
    return f"{math.ceil(size * 10 / 2**20) / 10:.1f} MiB"


def _allowed_signature(data: bytes) -> bool:
    head = data[:16]
    return (
        head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM"))
        or head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"))
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    )


_UNSUPPORTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "PDF"),
    (b"SIMPLE  =", "FITS"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "PostScript/EPS"),
    (b"8BPS", "PSD"),
    (b"gimp xcf", "XCF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
    (b"DDS ", "DDS"),
    (b"qoif", "QOI"),
    (b"v/1\x01", "OpenEXR"),
    (b"#?RADIANCE", "HDR"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"Rar!", "RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
)
_ISO_MEDIA_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"hevc": "HEIC",
    b"hevx": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}


def _unsupported_format(data: bytes) -> str | None:
    """Name a recognisable format outside ALLOWED_FORMATS, so the reason says what it was."""
    head = data[:64]
    for signature, name in _UNSUPPORTED_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[4:8] == b"ftyp":
        return _ISO_MEDIA_BRANDS.get(head[8:12], "MP4/MOV video")
    if data[128:132] == b"DICM":
        return "DICOM"
    if _looks_like_svg(data[:4096]):
        return "SVG"
    return None


def _looks_like_svg(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--")) and b"<svg" in text
