"""decode_image: every input mode ends as one (C, S, S) uint8 tensor; bad files get a reason."""

from __future__ import annotations

import hashlib
import random
import struct
import time
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from activelearn.ingest import decode
from activelearn.ingest.decode import (
    MAX_FILE_BYTES,
    DecodedImage,
    ImageRejected,
    decode_image,
)


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def white_square(mode: str = "L", size: tuple[int, int] = (40, 40), white: object = 255) -> bytes:
    """A black image with a white square in its top-left quarter, as PNG."""
    image = Image.new(mode, size, 0)
    image.paste(white, (0, 0, size[0] // 2, size[1] // 2))
    return encode(image, "PNG")


def assert_square_top_left(decoded: DecodedImage, *, channels: int = 1, size: int = 28) -> None:
    pixels = decoded.pixels
    assert pixels.shape == (channels, size, size)
    assert pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous
    quarter = size // 4
    assert (pixels[:, quarter, quarter] > 200).all(), "inside the square must stay white"
    assert (pixels[:, 3 * quarter, 3 * quarter] < 50).all(), "outside the square must stay black"
    assert (pixels[:, quarter, 3 * quarter] < 50).all()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    checksum = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", checksum)


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims width x height grey pixels, tiny on disk."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 2)  # only two rows of data
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def noise_jpeg(size: int = 200) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return encode(image, "JPEG", quality=90)


# ------------------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("channels", [1, 3])
def test_grey_and_colour_give_the_requested_channels(mode: str, channels: int) -> None:
    white = 255 if mode == "L" else (255, 255, 255)
    decoded = decode_image(white_square(mode, white=white), channels=channels)
    assert_square_top_left(decoded, channels=channels)
    assert (decoded.width, decoded.height, decoded.format) == (40, 40, "PNG")


def test_rgba_is_composited_over_black() -> None:
    image = Image.new("RGBA", (40, 40), (255, 255, 255, 0))  # transparent WHITE background
    image.paste((255, 255, 255, 255), (0, 0, 20, 20))
    image.paste((255, 255, 255, 128), (20, 20, 40, 40))  # half-transparent white
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.pixels[0, 7, 7] == 255
    assert decoded.pixels[0, 7, 21] == 0  # transparent -> black, whatever its colour
    assert abs(int(decoded.pixels[0, 21, 21]) - 128) <= 2


def test_la_is_composited_over_black() -> None:
    image = Image.new("LA", (40, 40), (255, 0))
    image.paste((255, 255), (0, 0, 20, 20))
    assert_square_top_left(decode_image(encode(image, "PNG")))


def test_palette_with_transparent_index() -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([255, 255, 255] * 2 + [0, 0, 0] * 254)  # index 0 and 1 are both white
    image.paste(1, (0, 0, 20, 20))
    data = encode(image, "PNG", transparency=0)  # ... but index 0 is transparent
    decoded = decode_image(data, channels=3)
    assert_square_top_left(decoded, channels=3)


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    values = np.full((40, 40), 128 * 257, dtype=np.uint16)  # the middle of the 16-bit range
    values[:20, :20] = 65535
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.pixels[0, 7, 7] == 255
    assert decoded.pixels[0, 20, 20] == 128  # clipping would have made this 255


def test_thirty_two_bit_integer_tiff_with_sixteen_bit_values() -> None:
    values = np.zeros((40, 40), dtype=np.int32)
    values[:20, :20] = 65535
    image = Image.fromarray(values)
    assert image.mode == "I"
    assert_square_top_left(decode_image(encode(image, "TIFF")))


def test_float_tiff_in_unit_range() -> None:
    values = np.zeros((40, 40), dtype=np.float32)
    values[:20, :20] = 1.0
    assert_square_top_left(decode_image(encode(Image.fromarray(values), "TIFF")))


def test_cmyk_jpeg() -> None:
    image = Image.new("CMYK", (40, 40), (0, 0, 0, 255))  # black ink everywhere
    image.paste((0, 0, 0, 0), (0, 0, 20, 20))  # no ink: white paper
    decoded = decode_image(encode(image, "JPEG", quality=95))
    assert decoded.format == "JPEG"
    assert_square_top_left(decoded)


def test_one_bit() -> None:
    assert_square_top_left(decode_image(white_square("1", white=1)))


def test_animated_gif_uses_the_first_frame() -> None:
    first = Image.new("L", (40, 40), 0)
    first.paste(255, (0, 0, 20, 20))
    second = Image.new("L", (40, 40), 255)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(BytesIO(data)).n_frames == 2
    decoded = decode_image(data)
    assert decoded.format == "GIF"
    assert_square_top_left(decoded)


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("L", (40, 20), 0)  # landscape as stored ...
    stored.paste(255, (0, 0, 10, 20))  # ... with a white band on its left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (20, 40)  # as displayed: portrait
    pixels = decoded.pixels[0]  # 14 wide x 28 high, centred: columns 7..20
    assert pixels[2, 14] > 200, "the left band is at the top once turned"
    assert pixels[25, 14] < 50
    assert pixels[14, 2] == 0, "padding is black"


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_every_allowed_format(image_format: str) -> None:
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))
    options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
    decoded = decode_image(encode(image, image_format, **options))
    assert decoded.format == image_format
    assert_square_top_left(decoded)


def test_wide_image_keeps_its_aspect_ratio_and_is_padded_with_black() -> None:
    decoded = decode_image(encode(Image.new("L", (56, 28), 255), "PNG"))
    pixels = decoded.pixels[0]
    assert (pixels[:7] == 0).all() and (pixels[21:] == 0).all()
    assert (pixels[7:21] == 255).all()
    assert (decoded.width, decoded.height) == (56, 28)


def test_small_image_is_enlarged_and_other_sizes_work() -> None:
    decoded = decode_image(white_square("L", size=(8, 8)), image_size=64, channels=3)
    assert_square_top_left(decoded, channels=3, size=64)


def test_large_jpeg_is_reduced() -> None:
    image = Image.new("L", (2400, 1600), 0)
    image.paste(255, (0, 0, 1200, 800))
    decoded = decode_image(encode(image, "JPEG", quality=90))
    assert (decoded.width, decoded.height) == (2400, 1600)
    pixels = decoded.pixels[0]  # 28 x 19 (rounded) centred vertically
    assert pixels[7, 5] > 200 and pixels[18, 20] < 50 and pixels[1, 14] == 0


def test_sha256_is_of_the_raw_bytes() -> None:
    data = white_square()
    first, second = decode_image(data), decode_image(bytes(data))
    assert first.sha256 == second.sha256 == hashlib.sha256(data).hexdigest()
    other = decode_image(white_square(size=(41, 40)))
    assert other.sha256 != first.sha256


def test_bad_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        decode_image(white_square(), channels=2)
    with pytest.raises(ValueError):
        decode_image(white_square(), image_size=0)


# --------------------------------------------------------------------------------- rejections


def rejection(data: bytes, **options: int) -> str:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, **options)
    return caught.value.reason


def test_empty_file() -> None:
    assert rejection(b"") == "empty file (0 bytes)"


def test_text_is_not_an_image() -> None:
    assert rejection(b"hello, this file is named cat.png\n") == "not an image"


def test_corrupt_png_after_a_valid_header() -> None:
    header = png_claiming(40, 40)[:33]  # signature + IHDR
    assert rejection(header + b"garbage!" * 64) == "truncated or corrupt image"


def test_truncated_png() -> None:
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 256, (100, 100), dtype=np.uint8)), "PNG")
    assert rejection(data[: len(data) // 2]) == "truncated or corrupt image"


def test_truncated_jpeg() -> None:
    data = noise_jpeg()
    assert rejection(data[: len(data) // 2]) == "truncated or corrupt image"


def test_svg() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9"></svg>'
    assert rejection(svg) == "unsupported format: SVG"


def test_pdf() -> None:
    assert rejection(b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n") == "unsupported format: PDF"


def test_fits() -> None:
    header = b"SIMPLE  =                    T".ljust(80) + b"BITPIX  =                    8"
    assert rejection(header.ljust(2880)) == "unsupported format: FITS"


def test_decompression_bomb_is_rejected_from_the_header() -> None:
    data = png_claiming(10_000, 10_000)
    assert len(data) < 1_000
    started = time.perf_counter()
    reason = rejection(data)
    assert time.perf_counter() - started < 1.0
    assert reason == "image too large: 100,000,000 pixels (limit 40,000,000)"


def test_bomb_past_pillows_own_error_limit() -> None:
    assert rejection(png_claiming(20_000, 20_000)).startswith("image too large: 400,000,000")


def test_pixel_limit_under_pillows() -> None:
    assert rejection(png_claiming(3_000, 3_000), max_pixels=1_000_000) == (
        "image too large: 9,000,000 pixels (limit 1,000,000)"
    )


def test_file_over_the_byte_cap() -> None:
    data = white_square() + b"\x00" * MAX_FILE_BYTES
    assert rejection(data) == "file too large: 50.1 MiB (limit 50 MiB)"


def test_file_over_a_lowered_byte_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 1024)
    assert rejection(noise_jpeg()).startswith("file too large:")


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"8BPS\x00\x01" + bytes(40), "PSD"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(40), "HEIC"),
        (b"\x00\x00\x00\x18ftypavif" + bytes(40), "AVIF"),
        (b"PK\x03\x04" + bytes(40), "ZIP archive"),
    ],
)
def test_other_formats_are_named(data: bytes, name: str) -> None:
    assert rejection(data) == f"unsupported format: {name}"


def test_damaged_files_only_ever_raise_image_rejected() -> None:
    """Truncations and byte flips of every format: a DecodedImage or ImageRejected, nothing else."""
    image = Image.new("RGBA", (24, 16), (10, 200, 30, 255))
    image.paste((250, 0, 0, 90), (4, 4, 12, 12))
    samples = [
        encode(image, "PNG"),
        encode(image.convert("RGB"), "JPEG"),
        encode(image.convert("P"), "GIF"),
        encode(image, "BMP"),
        encode(image, "TIFF"),
        encode(image, "WEBP"),
    ]
    rng = random.Random(7)
    for sample in samples:
        for _ in range(40):
            damaged = bytearray(sample)
            if rng.random() < 0.5:
                del damaged[rng.randrange(1, len(damaged)) :]
            else:
                for _ in range(rng.randrange(1, 6)):
                    damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            try:
                decoded = decode_image(bytes(damaged))
            except ImageRejected as rejected:
                assert rejected.reason
            else:
                assert decoded.pixels.shape == (1, 28, 28)
