"""Decoding, resizing and encoding with Pillow, and the BlurHash placeholder.

Vendor images are attacker-chosen bytes, so before anything is decoded the header's pixel count is checked
against ``CATALOG_IMAGES_MAX_PIXELS`` (a 100-KB PNG can declare a 50000x50000 canvas: a decompression bomb that
would take gigabytes to decode). Pillow's own ``MAX_IMAGE_PIXELS`` is set to the same bound, so its guard
(which raises at twice the bound) backs ours. JPEGs are decoded at a reduced scale when the thumbnail is much
smaller (``draft``), which is most of the speed of a cold thumbnail.

Blocking and CPU-bound: the service runs it in a worker thread.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import blurhash  # type: ignore[import-untyped]
from PIL import Image, ImageOps, UnidentifiedImageError, features

from app.errors import ImageRefused, UnsupportedFormat

#: format name -> (Pillow's format, media type, encoder options). Qualities chosen for phone screens.
FORMATS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "webp": ("WEBP", "image/webp", {"quality": 80, "method": 4}),
    "avif": ("AVIF", "image/avif", {"quality": 60, "speed": 8}),
    "jpeg": ("JPEG", "image/jpeg", {"quality": 82, "optimize": True, "progressive": True}),
}
#: The largest side a thumbnail may ask for (and what a missing side is bounded by): the schema's bound too.
MAX_SIDE = 2048
#: The side of the image the placeholder is computed from (BlurHash keeps a few cosine components only).
PLACEHOLDER_SIDE = 32
PLACEHOLDER_COMPONENTS = (4, 3)


def can_encode(fmt: str) -> bool:
    """AVIF needs a Pillow built with libavif (the 11.2+ wheels are); WebP and JPEG are always there."""
    return fmt != "avif" or bool(features.check("avif"))


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    media_type: str
    placeholder: str | None  # only when asked for


class PillowImaging:
    def __init__(self, *, max_pixels: int, max_side: int) -> None:
        self.max_pixels = max_pixels
        self.max_side = max_side
        Image.MAX_IMAGE_PIXELS = max_pixels  # process-wide: this is the only code in the service that decodes images

    def render(self, original: bytes, *, w: int | None, h: int | None, fmt: str, placeholder: bool) -> Rendered:
        """The image fitted inside ``w`` x ``h`` (aspect kept, never enlarged; a missing side is free), as ``fmt``."""
        if not can_encode(fmt):
            raise UnsupportedFormat(f"this build cannot encode {fmt}", details={"format": fmt})
        pil_format, media_type, options = FORMATS[fmt]
        box = (min(w or self.max_side, self.max_side), min(h or self.max_side, self.max_side))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is the stricter check, below
            image = self._open(original)
            try:
                image.draft("RGB", box)  # JPEG only: decode at 1/2, 1/4 or 1/8 scale when that still covers the box
                image = ImageOps.exif_transpose(image)
                image.thumbnail(box, Image.Resampling.LANCZOS)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise ImageRefused(f"the vendor image could not be decoded ({type(exc).__name__})") from None
        image = _mode_for(image, pil_format)
        out = io.BytesIO()
        image.save(out, pil_format, **options)
        return Rendered(out.getvalue(), media_type, _blurhash(image) if placeholder else None)

    def _open(self, original: bytes) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(original))
        except Image.DecompressionBombError:
            raise ImageRefused(
                f"the vendor image has more than {self.max_pixels} pixels", details={"reason": "pixels"}
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ImageRefused(
                f"the vendor's answer is not an image Pillow reads ({type(exc).__name__})",
                details={"reason": "not_an_image"},
            ) from None
        if image.width * image.height > self.max_pixels:
            raise ImageRefused(
                f"the vendor image has {image.width}x{image.height} pixels, more than {self.max_pixels}",
                details={"reason": "pixels", "width": image.width, "height": image.height},
            )
        return image


def _mode_for(image: Image.Image, pil_format: str) -> Image.Image:
    """JPEG has no alpha: transparency goes onto white (what a product shot on a page looks like)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if pil_format == "JPEG":
        if has_alpha:
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return image if image.mode == "RGB" else image.convert("RGB")
    if has_alpha:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _blurhash(image: Image.Image) -> str:
    small = image.convert("RGB")
    small.thumbnail((PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), Image.Resampling.BILINEAR)
    width, height = small.size
    pixels = list(small.get_flattened_data())
    rows = [pixels[y * width : (y + 1) * width] for y in range(height)]
    x, y = PLACEHOLDER_COMPONENTS
    return str(blurhash.encode(rows, components_x=x, components_y=y))
