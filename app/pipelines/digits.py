"""Digits prepared the way MNIST itself was made, so that a phone photo of a dark digit on
paper works as well as a white-on-black MNIST sample: grayscale, invert when the background is
light, subtract the background, crop to the ink, scale the longer side to 20 px keeping the
aspect ratio, and place it in 28×28 with its centre of mass at the centre."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.pipelines.digit_content import NO_CONTENT, no_digit_reason

# MNIST geometry: the digit's longer side is 20 px, its centre of mass at (14, 14) of 28×28
# (measured on the official files: mean centre of mass 13.99, 14.01).
DIGIT_BOX = 20
DIGIT_CANVAS = 28
DIGIT_CENTRE = 14.0
# Photos are shrunk to this before looking for the digit: plenty for a 20-px result.
DIGIT_WORK_SIZE = 160


def without_alpha(image: Image.Image) -> Image.Image:
    """Flatten transparency onto a background of the opposite shade to the visible ink, so that
    dark strokes drawn on a transparent canvas stay visible, and so do light ones."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return image
    rgba = image.convert("RGBA")
    pixels = np.asarray(rgba)
    opaque = pixels[..., 3] > 127
    ink = pixels[..., :3][opaque]
    light_ink = ink.size > 0 and float(ink.mean()) > 127
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255) if light_ink else (255,) * 4)
    return Image.alpha_composite(background, rgba).convert("RGB")


def centre_digit(image: Image.Image) -> np.ndarray:
    """A digit prepared as MNIST digits were: uint8 [1, 28, 28], white on black.

    Works on 8-bit levels like MNIST itself; Pillow only scales the cropped digit.
    """
    return centre_digit_checked(image)[0]


def centre_digit_checked(image: Image.Image) -> tuple[np.ndarray, str | None]:
    """`centre_digit`, plus `no_content` when the picture holds no ink after thresholding (a
    blank page, a uniform colour) or nothing stroke-like (noise, a filled blob): the answer then
    says so however sure the model is (app.pipelines.digit_content)."""
    gray = without_alpha(image).convert("L")
    if max(gray.size) > DIGIT_WORK_SIZE:
        gray.thumbnail((DIGIT_WORK_SIZE, DIGIT_WORK_SIZE), Image.Resampling.BOX)
    width, height = gray.size
    canvas = np.zeros((1, DIGIT_CANVAS, DIGIT_CANVAS), np.uint8)
    found = _ink(np.frombuffer(gray.tobytes(), np.uint8).reshape(height, width))
    if found is None:
        return canvas, NO_CONTENT  # a blank page
    ink, noisy = found
    reason = no_digit_reason(ink)
    # The digit's box: every inked pixel of a clean image (as MNIST), but only the clearly
    # inked ones of a photo, so that a speck of dirt far away does not stretch the box.
    strokes = ink >= _otsu_threshold(ink) if noisy else ink
    rows = np.flatnonzero(strokes.any(axis=1))
    cols = np.flatnonzero(strokes.any(axis=0))
    digit = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = digit.shape
    scale = DIGIT_BOX / max(width, height)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if target != (width, height):
        scaled = Image.fromarray(np.ascontiguousarray(digit)).resize(
            target, Image.Resampling.LANCZOS
        )
        digit = np.frombuffer(scaled.tobytes(), np.uint8).reshape(target[1], target[0])
    _paste_by_centre_of_mass(canvas[0], digit)
    return canvas, reason


def _ink(pixels: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """How much ink each pixel holds (0 = none, 255 = the strongest stroke), whatever the paper
    and ink colours, and whether the background is noisy (a photo); None if nothing is written.

    The border says what the background is: a light border means dark ink on paper, so the
    levels are inverted. The background level, and anything no stronger than the border's
    noise, maps to 0; the strongest ink maps to 255. One lookup table does it all (and is
    skipped for MNIST-style input, where it would change nothing).
    """
    border = np.sort(np.concatenate((pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1])))
    last = len(border) - 1
    background = int(border[last // 2])
    light_paper = background > 127
    if light_paper:
        background = 255 - background
        noisiest = 255 - int(border[round(0.02 * last)])
        strongest = 255 - int(pixels.min())
    else:
        noisiest = int(border[round(0.98 * last)])
        strongest = int(pixels.max())
    if strongest - background < 26:  # no contrast at all: nothing written
        return None
    noisy = noisiest - background > 4
    floor = background + min(0.5 * (strongest - background), 1.5 * (noisiest - background))
    if not light_paper and floor == 0 and strongest == 255:
        return pixels, noisy
    levels = np.arange(256, dtype=np.float32)
    if light_paper:
        levels = 255 - levels
    table = np.rint(np.clip((levels - floor) * (255 / (strongest - floor)), 0, 255))
    return np.take(table.astype(np.uint8), pixels), noisy


def _otsu_threshold(ink: np.ndarray) -> int:
    """The level that best splits ink from background (Otsu's method on the histogram)."""
    histogram = np.bincount(ink.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(histogram)
    total = weight[-1]
    level_sum = np.cumsum(histogram * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (level_sum[-1] * weight - level_sum * total) ** 2 / (weight * (total - weight))
    return int(np.argmax(np.nan_to_num(between[:-1]))) + 1


def _paste_by_centre_of_mass(canvas: np.ndarray, digit: np.ndarray) -> None:
    """Translate by whole pixels so the digit's centre of mass lands on the canvas centre."""
    digit_sums_y = digit.sum(axis=1, dtype=np.float64)
    mass = float(digit_sums_y.sum())
    height, width = digit.shape
    if mass <= 0:
        centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    else:
        centre_y = float(digit_sums_y @ np.arange(height)) / mass
        centre_x = float(digit.sum(axis=0, dtype=np.float64) @ np.arange(width)) / mass
    top = round(DIGIT_CENTRE - centre_y)
    left = round(DIGIT_CENTRE - centre_x)
    size = canvas.shape[0]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, size), min(left + width, size)
    canvas[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
