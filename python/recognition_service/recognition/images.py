"""The image seam: decode uploaded bytes into an oriented BGR array, refusing what is not a safe image."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from recognition_service.errors import ImageTooLarge, InvalidImage

ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP"}
# Longer side / shorter side. The detector scales the longer side to DET_SIZE (640): past this ratio the
# shorter side shrinks below the smallest face it can find (and to 0 px, which crashes OpenCV's resize).
MAX_ASPECT_RATIO = 20
# PNG, WebP and BMP cannot be decoded at a reduced scale: a 40 MP one briefly takes up to ~600 MB (lossless
# WebP, measured by scripts/measure_image_memory.py). One such decode at a time per process bounds a worker's
# peak whatever the number of threads; JPEGs and images under this size never wait.
LARGE_DECODE_PIXELS = 4_000_000
_large_decodes = threading.BoundedSemaphore(1)


@dataclass
class DecodedImage:
    """Pixels in BGR order; width/height are of the oriented original, `scale` maps pixels back to it."""

    bgr: np.ndarray
    width: int
    height: int
    scale: float
    format: str


def decode_image(data: bytes, *, max_pixels: int, max_side: int) -> DecodedImage:
    """Decode JPEG/PNG/WebP/BMP bytes: EXIF orientation applied, grayscale and alpha made RGB.

    The pixel and shape limits are checked from the header, before any pixel is decoded. An image whose
    longer side exceeds max_side is reduced before it becomes an array: JPEGs while decoding (libjpeg's
    DCT scaling, at the largest 1/2, 1/4 or 1/8 scale that fits max_side: a 6000 px photo decodes at
    3000 px and never holds its 24 MP), other formats right after (Pillow's reducing resize), so what
    follows never holds more than max_side x max_side pixels, whatever was uploaded.
    """
    if not data:
        raise InvalidImage("the image is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image has too many pixels: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage("the data is not a readable image (JPEG, PNG, WebP or BMP)") from exc
    try:
        if img.format not in ACCEPTED_FORMATS:
            raise InvalidImage(f"unsupported image format {img.format}; send JPEG, PNG, WebP or BMP")
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; "
                                f"the limit is MAX_IMAGE_PIXELS={max_pixels}")
        if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            raise InvalidImage(f"the image is {width}x{height} pixels: one side is more than {MAX_ASPECT_RATIO} "
                               "times the other, too narrow to hold a detectable face")
        jpeg = img.format in ("JPEG", "MPO")  # scaled while decoding; the other formats only after
        if jpeg and max(width, height) > max_side:
            k = next((k for k in (2, 4, 8) if max(width, height) / k <= max_side), 8)
            img.draft("RGB", (max(1, width // k), max(1, height // k)))  # libjpeg decodes at 1/k
        heavy = not jpeg and width * height > LARGE_DECODE_PIXELS
        try:
            if heavy:
                _large_decodes.acquire()
            small = img
            try:
                img.load()
                small = _reduced(img, max_side)  # a JPEG over 8 x max_side is still too large at 1/8
            finally:
                if heavy:
                    if small is not img:
                        img.close()  # the full-size pixels go now, before another large decode may start
                    _large_decodes.release()
            oriented = ImageOps.exif_transpose(small)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc
        try:
            rgb = _to_rgb(oriented)
            full_w, full_h = (height, width) if oriented.size[0] != small.size[0] else (width, height)
            bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        finally:
            if oriented is not small:
                oriented.close()
            if small is not img:
                small.close()
        return DecodedImage(bgr=bgr, width=full_w, height=full_h, scale=full_w / bgr.shape[1],
                            format=img.format)
    finally:
        img.close()


def _reduced(img: Image.Image, max_side: int) -> Image.Image:
    """A decoded (non-JPEG) image scaled down to fit max_side."""
    longest = max(img.size)
    if longest <= max_side:
        return img
    ratio = max_side / longest
    size = (max(1, round(img.width * ratio)), max(1, round(img.height * ratio)))
    source = img.convert("RGBA") if img.mode in ("P", "PA", "1") else img  # indices and bits cannot be averaged
    # reducing_gap: a fast box reduce by a whole factor first, then a proper resample (as Image.thumbnail).
    reduced = source.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    if source is not img:
        source.close()
    reduced.info = dict(img.info)  # keeps the EXIF orientation for exif_transpose
    return reduced


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white rather than black, as a viewer would show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)  # float32: a 4096 px 16-bit photo takes 64 MB, not 128
        peak = arr.max() or 1.0
        return Image.fromarray((arr * (255.0 / peak)).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def encode_crop(crop: np.ndarray) -> bytes:
    """An aligned face crop as PNG: lossless, so a later model embeds exactly what enrolment saw."""
    import cv2

    ok, buf = cv2.imencode(".png", crop)
    if not ok:
        raise ValueError("could not encode the face crop")
    return buf.tobytes()


def decode_crop(png: bytes) -> np.ndarray:
    """A kept crop back to the 112x112 BGR array the recogniser takes."""
    import cv2

    crop = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if crop is None or crop.shape[:2] != (112, 112):
        raise ValueError("a kept face crop is not a 112x112 image")
    return crop
