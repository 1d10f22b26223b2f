"""Pillow rendering: sizes and modes, and what is refused before or while decoding."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.errors import ImageRefused
from app.images.pillow import PillowImaging
from simulators.images import encoded, photo


@pytest.fixture
def imaging() -> PillowImaging:
    return PillowImaging(max_pixels=1_000_000, max_side=512)


def test_fits_the_box_keeps_the_aspect_and_bounds_a_missing_side(imaging: PillowImaging) -> None:
    jpeg = encoded(photo(900, 600), "JPEG")
    out = imaging.render(jpeg, w=300, h=None, fmt="webp", placeholder=False)
    assert Image.open(io.BytesIO(out.body)).size == (300, 200)
    assert out.media_type == "image/webp" and out.placeholder is None
    unbounded = imaging.render(jpeg, w=None, h=None, fmt="jpeg", placeholder=False)
    assert Image.open(io.BytesIO(unbounded.body)).size == (512, 341)  # max_side


def test_the_placeholder_is_a_blurhash_of_the_image(imaging: PillowImaging) -> None:
    red = encoded(Image.new("RGB", (64, 64), (220, 20, 20)), "PNG")
    blue = encoded(Image.new("RGB", (64, 64), (20, 20, 220)), "PNG")
    first = imaging.render(red, w=32, h=None, fmt="webp", placeholder=True).placeholder
    assert first is not None and len(first) == 4 + 2 * (4 * 3 - 1) + 2  # size flag, max AC, DC, 11 AC pairs
    assert first == imaging.render(red, w=99, h=None, fmt="jpeg", placeholder=True).placeholder  # size-free
    assert first != imaging.render(blue, w=32, h=None, fmt="webp", placeholder=True).placeholder


def test_too_many_pixels_is_refused_before_decoding(imaging: PillowImaging) -> None:
    bomb = encoded(Image.new("1", (1001, 1000)), "PNG")  # 1.001 M pixels in a few hundred bytes
    with pytest.raises(ImageRefused) as refused:
        imaging.render(bomb, w=10, h=10, fmt="webp", placeholder=False)
    assert refused.value.details["reason"] == "pixels"
    # Past twice the bound Pillow's own guard refuses in open(): the same answer.
    huge = encoded(Image.new("1", (3000, 3000)), "PNG")
    with pytest.raises(ImageRefused) as refused:
        imaging.render(huge, w=10, h=10, fmt="webp", placeholder=False)
    assert refused.value.details["reason"] == "pixels"


def test_what_is_not_an_image_or_is_cut_short_is_refused(imaging: PillowImaging) -> None:
    with pytest.raises(ImageRefused) as refused:
        imaging.render(b"<html>not found</html>", w=10, h=10, fmt="webp", placeholder=False)
    assert refused.value.details["reason"] == "not_an_image"
    truncated = encoded(photo(400, 400), "PNG")[:5000]
    with pytest.raises(ImageRefused):
        imaging.render(truncated, w=10, h=10, fmt="webp", placeholder=False)
