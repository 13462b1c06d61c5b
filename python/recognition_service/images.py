"""The image seam: decode uploaded bytes into an oriented BGR array, refusing what is not a safe image."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, InvalidImage

ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP"}


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

    The pixel limit is checked from the header, before any pixel is decoded. Large JPEGs are
    decoded at a reduced scale (libjpeg's DCT scaling) when their longer side exceeds max_side.
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
        if min(width, height) < 8:
            raise InvalidImage(f"the image is {width}x{height} pixels: too small to hold a face")
        if img.format in ("JPEG", "MPO") and max(width, height) > max_side:
            ratio = max_side / max(width, height)
            img.draft("RGB", (max(1, int(width * ratio)), max(1, int(height * ratio))))
        try:
            img.load()
            oriented = ImageOps.exif_transpose(img)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc
        try:
            rgb = _to_rgb(oriented)
            full_w, full_h = (height, width) if oriented.size[0] != img.size[0] else (width, height)
            bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        finally:
            if oriented is not img:
                oriented.close()
        return DecodedImage(bgr=bgr, width=full_w, height=full_h, scale=full_w / bgr.shape[1],
                            format=img.format)
    finally:
        img.close()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white rather than black, as a viewer would show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() or 1.0
        return Image.fromarray((arr * (255.0 / peak)).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")
