"""Images as the encoder takes them, the same on device and cloud: decode, resize, normalize.

::

    PNG / JPEG bytes ─► decode_image (bounded) ─┐
    file path ─► load_rgb ──────────────────────┼─► (H, W, 3) uint8 ─► preprocess ─► (B, 3, H, W) float32
    (h, w, 3) uint8 array ─► resized ───────────┘

The device runs this before its encoder; a cloud-only server runs it on an uploaded image
before the same encoder, so both feed the encoder identical tensors for the same pixels.
Pillow is imported inside the functions: a device that never decodes an image never loads it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from shared.errors import PayloadTooLarge, ProtocolError, UnsupportedMediaType
from shared.manifest import InputSpec

__all__ = [
    "IMAGE_CONTENT_TYPES",
    "MAX_IMAGE_PIXELS",
    "ImageFormat",
    "ImageLike",
    "decode_image",
    "encode_image",
    "load_rgb",
    "preprocess",
    "resized",
]

ImageLike = str | Path | npt.NDArray[np.uint8]
ImageFormat = Literal["PNG", "JPEG"]
IMAGE_CONTENT_TYPES: dict[str, ImageFormat] = {"image/png": "PNG", "image/jpeg": "JPEG"}
"""Media types an image body may be sent as, and the format each one must hold."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Most pixels ``decode_image`` accepts by default; larger headers are refused before decoding."""


def resized(image: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """An (h, w, 3) uint8 RGB array at ``size`` = (H, W), bilinear as the manifest says."""
    height, width = size
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"an image array must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def load_rgb(image: ImageLike, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A file or an (h, w, 3) uint8 array -> (H, W, 3) uint8 RGB at ``size``."""
    if isinstance(image, np.ndarray):
        return resized(image, size)
    from PIL import Image, UnidentifiedImageError

    path = Path(image)
    try:
        with Image.open(path) as opened:
            rgb = np.asarray(opened.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} not found; check the path") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image Pillow can read (PNG, JPEG, ...)") from None
    return resized(rgb, size)


def decode_image(
    body: bytes, expected: ImageFormat | None = None, max_pixels: int = MAX_IMAGE_PIXELS
) -> npt.NDArray[np.uint8]:
    """PNG or JPEG bytes from a network -> (h, w, 3) uint8 RGB, never more than ``max_pixels``.

    The header is read first and a size over the limit is refused before any pixel is
    decoded; Pillow's own decompression-bomb guard stays on underneath, its warning an error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body)) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise PayloadTooLarge(
                        f"image of {width}x{height} pixels is over the {max_pixels}-pixel limit; "
                        "resize it on the device (the encoder takes far fewer) and send it again"
                    )
                if opened.format not in IMAGE_CONTENT_TYPES.values():
                    raise UnsupportedMediaType(
                        f"image is {opened.format}, not PNG or JPEG; send PNG or JPEG bytes"
                    )
                if expected is not None and opened.format != expected:
                    raise ProtocolError(
                        f"body is {opened.format} but was sent as {expected}; fix the Content-Type"
                    )
                rgb = np.asarray(opened.convert("RGB"), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image refused as a decompression bomb ({exc}); send a smaller one") from exc
    except UnidentifiedImageError:
        raise ProtocolError("body is not an image Pillow can decode; send PNG or JPEG bytes") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"image did not decode ({exc}); send a complete PNG or JPEG file") from exc
    return rgb


def encode_image(image: npt.NDArray[np.uint8], image_format: ImageFormat, quality: int = 75) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG or JPEG bytes (``quality`` 1..95 for JPEG; PNG is lossless)."""
    from PIL import Image

    out = io.BytesIO()
    if image_format == "JPEG":
        Image.fromarray(image).save(out, "JPEG", quality=quality, optimize=True)
    else:
        Image.fromarray(image).save(out, "PNG", optimize=True)
    return out.getvalue()


def preprocess(images: Sequence[ImageLike], spec: InputSpec) -> npt.NDArray[np.float32]:
    """Files or (h, w, 3) uint8 arrays of any size -> (B, 3, H, W) float32, normalized per ``spec``."""
    _, height, width = spec.shape
    batch = np.empty((len(images), height, width, 3), dtype=np.uint8)  # (B, H, W, 3)
    for i, image in enumerate(images):
        batch[i] = load_rgb(image, (height, width))
    scaled = batch.astype(np.float32) / np.float32(255.0)
    normalized = (scaled - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(normalized.transpose(0, 3, 1, 2), dtype=np.float32)
