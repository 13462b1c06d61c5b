import io
import struct
import zlib

import numpy as np
import pytest
from devtools.shared import sample
from PIL import Image
from recognition_service.errors import ImageTooLarge, InvalidImage
from recognition_service.recognition.images import decode_image


def decode(data, max_pixels=40_000_000, max_side=1920):
    return decode_image(data, max_pixels=max_pixels, max_side=max_side)


def test_exif_orientation_is_applied():
    raw = Image.open(io.BytesIO(sample("exif_orientation6.jpg")))
    assert raw.size == (640, 480)
    img = decode(sample("exif_orientation6.jpg"))
    assert (img.width, img.height) == (480, 640)
    assert img.bgr.shape == (640, 480, 3)


@pytest.mark.parametrize("name,fmt", [("grayscale_L.png", "PNG"), ("rgba_alpha.png", "PNG"),
                                      ("png_named_as_jpg.jpg", "PNG"), ("obama.jpg", "JPEG")])
def test_modes_become_three_channel_bgr(name, fmt):
    img = decode(sample(name))
    assert img.format == fmt
    assert img.bgr.ndim == 3 and img.bgr.shape[2] == 3 and img.bgr.dtype == np.uint8
    assert img.bgr.flags["C_CONTIGUOUS"]


def test_channel_order_is_bgr():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buf, "PNG")
    assert decode(buf.getvalue()).bgr[0, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize("fmt", ["WEBP", "BMP"])
def test_webp_and_bmp(fmt):
    buf = io.BytesIO()
    Image.open(io.BytesIO(sample("obama_small.jpg"))).save(buf, fmt)
    img = decode(buf.getvalue())
    assert (img.width, img.height) == (320, 240) and img.format == fmt


def test_large_jpeg_is_decoded_at_reduced_scale_but_reports_original_size():
    img = decode(sample("large_3024x4032.jpg"))
    assert (img.width, img.height) == (3024, 4032)
    # libjpeg's largest 1/2^k scale that fits 1920: 1/4, never the full 12 MP
    assert 960 <= max(img.bgr.shape[:2]) <= 1920
    assert img.scale == pytest.approx(3024 / img.bgr.shape[1])


@pytest.mark.parametrize("data", [b"", b"hello, not an image", sample("truncated.jpg"), sample("corrupted.png"),
                                  b"GIF89a" + b"\0" * 40])
def test_unreadable_data_is_invalid_image(data):
    with pytest.raises(InvalidImage):
        decode(data)


def _png_header_only(width, height):
    """A PNG that declares its size but holds no pixel data: decoding it would fail."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(ImageTooLarge):
        decode(_png_header_only(20_000, 20_000), max_pixels=40_000_000)
    with pytest.raises(InvalidImage):  # same file under the limit: decoding is what fails
        decode(_png_header_only(100, 100))


def _png(size, mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 200).save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


@pytest.mark.parametrize("size", [(8, 5_000_000), (5_000_000, 8), (100, 2_100)])
def test_extreme_aspect_ratios_are_refused_before_decoding(size):
    with pytest.raises(InvalidImage, match="times the other"):
        decode(_png(size))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP"])
def test_large_images_of_every_format_become_arrays_no_larger_than_max_side(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (8000, 5000), (90, 120, 150)).save(buf, fmt)
    img = decode(buf.getvalue(), max_side=1920)
    assert img.bgr.shape == (1200, 1920, 3)
    assert (img.width, img.height) == (8000, 5000) and img.scale == pytest.approx(8000 / 1920)
