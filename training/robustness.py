"""Inputs as users send them, for training augmentation and for the card's robustness metrics.

Each task names its variants of the test split in `Task.robustness_splits` (deterministic, so
`python -m training evaluate` re-measures them exactly); `robustness_metrics` runs each through
the exported graph and returns one `accuracy_<variant>` test metric per variant. The corruptions
themselves are plain numpy and Pillow, so the training augmentation (`Task.corrupt`, before a
batch becomes a tensor) and the measurement use the same code. Digit photos go through the
server's own `centre_digit`, so their figure is what the API would answer.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from app.card import Metric
from training.card import ROUNDING
from training.data import Split
from training.measure import measure
from training.tasks.base import Task

SAMPLE_RATE = 16000


def robustness_metrics(
    task: Task, onnx_path: Path, test: Split, dataset: str, num_classes: int
) -> list[Metric]:
    """One test metric per variant of the test split that the task defines."""
    out = []
    for variant, split in task.robustness_splits(test).items():
        result = measure(task, onnx_path, split, num_classes)
        low, high = result.interval_95
        out.append(
            Metric(
                name=f"accuracy_{variant}",
                value=round(result.accuracy, ROUNDING),
                dataset=f"{dataset} ({variant})",
                split="test",
                samples=len(split),
                interval_95=(round(low, ROUNDING), round(high, ROUNDING)),
            )
        )
    return out


# -- photos of objects (CIFAR-10) ----------------------------------------------------------------


def _to_image(chw: np.ndarray) -> Image.Image:
    """float [0, 1] CHW → RGB (or L) Pillow image."""
    hwc = np.clip(np.rint(chw.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc)


def _from_image(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)).copy()


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert(image.mode)


def server_fit(image: Image.Image, size: int) -> np.ndarray:
    """An upload of another size as the server fits it (app/pipelines/image.py), float CHW."""
    from app.pipelines.image import fit_image

    return fit_image(image, image.mode, size, size).astype(np.float32) / 255.0


def photo_variant(chw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One training image as a user might send it: shown at another size (20–128 px, so a
    smaller or larger photo the server scales back), and/or JPEG-compressed at quality 30–95."""
    image = _to_image(chw)
    size = image.size[0]
    rescale, compress = rng.random() < 0.5, rng.random() < 0.7
    if not (rescale or compress):
        compress = True
    if rescale:
        filters = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.LANCZOS)
        side = int(rng.integers(20, 129))
        image = image.resize((side, side), filters[int(rng.integers(len(filters)))])
    if compress:
        image = jpeg(image, int(rng.integers(30, 96)))
    return server_fit(image, size) if image.size[0] != size else _from_image(image)


def photo_augment(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """A share `p` of a float CHW batch replaced by `photo_variant`s."""
    chosen = np.flatnonzero(rng.random(len(x)) < p)
    if len(chosen) == 0:
        return x
    x = x.copy()
    for i in chosen:
        x[i] = photo_variant(x[i], rng)
    return x


def jpeg_split(test: Split, quality: int) -> Split:
    x = np.stack([_from_image(jpeg(_to_image(chw), quality)) for chw in test.x])
    return Split(x, test.y, f"{test.source}, re-encoded as JPEG quality {quality}", test.groups)


def enlarged_photo_split(test: Split, factor: int = 4, quality: int = 85) -> Split:
    """Each test image enlarged `factor`× (bicubic), sent as a JPEG and fitted by the server."""
    size = test.x.shape[-1]

    def one(chw: np.ndarray) -> np.ndarray:
        big = _to_image(chw).resize((size * factor, size * factor), Image.Resampling.BICUBIC)
        return server_fit(jpeg(big, quality), size)

    x = np.stack([one(chw) for chw in test.x])
    return Split(
        x,
        test.y,
        f"{test.source}, enlarged {factor}x, JPEG quality {quality}, scaled back by the server",
        test.groups,
    )


# -- photos of handwritten digits ----------------------------------------------------------------

PAGE, SCALE = 160, 4  # the digit drawn 4x larger (112 px) on a 160-px page


def digit_photo(digit: np.ndarray, style: str, rng: np.random.Generator) -> Image.Image:
    """An MNIST digit (uint8 28x28, white on black) as a photo of dark ink on paper, in one of
    the `DIGIT_STYLES`: the input a user's phone gives the server."""
    ink = Image.fromarray(digit).resize((28 * SCALE, 28 * SCALE), Image.Resampling.BILINEAR)
    if style == "thin_pen":
        ink = ink.filter(ImageFilter.MinFilter(5))
    elif style == "thick_pen":
        ink = ink.filter(ImageFilter.MaxFilter(7))
    page = Image.new("L", (PAGE, PAGE), 0)
    offset = (PAGE - 28 * SCALE) // 2
    page.paste(ink, (offset, offset))
    strength = np.asarray(page, dtype=np.float32) / 255.0
    paper = np.full((PAGE, PAGE), float(rng.uniform(215, 250)), np.float32)
    darkness = 1.0
    if style == "pencil":
        darkness = float(rng.uniform(0.35, 0.55))
        strength = strength * rng.uniform(0.6, 1.0, strength.shape).astype(np.float32)
    if style == "shadow":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:PAGE, 0:PAGE].astype(np.float32) / PAGE - 0.5
        ramp = np.cos(angle) * xx + np.sin(angle) * yy  # -0.7 … 0.7 across the page
        paper = paper * (0.72 + 0.5 * np.clip(ramp, -0.5, 0.5)).astype(np.float32)
    photo = Image.fromarray(np.clip(paper * (1.0 - darkness * strength), 0, 255).astype(np.uint8))
    if style == "tilted":
        photo = _tilt(photo, rng)
    pixels = np.asarray(photo, dtype=np.float32)  # the camera's noise, over the whole picture
    pixels = pixels + rng.normal(0, 3.0, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _tilt(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Paper photographed at an angle: rotated ±15° and seen in perspective (corners moved by up
    to 12% of the page)."""
    fill = int(np.median(np.asarray(photo)))
    photo = photo.rotate(float(rng.uniform(-15, 15)), Image.Resampling.BILINEAR, fillcolor=fill)
    side = photo.size[0]
    corners = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float64)
    moved = corners + rng.uniform(-0.12, 0.12, corners.shape) * side
    coeffs = _perspective_coefficients(corners, moved)
    return photo.transform(
        photo.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR, fillcolor=fill
    )


def _perspective_coefficients(out_pts: np.ndarray, in_pts: np.ndarray) -> tuple[float, ...]:
    rows = []
    for (x, y), (u, v) in zip(out_pts, in_pts, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solution = np.linalg.solve(np.array(rows), in_pts.reshape(-1))
    return tuple(float(c) for c in solution)


DIGIT_STYLES = ("thin_pen", "thick_pen", "pencil", "shadow", "tilted")
DIGIT_PHOTO_EVERY = 5  # every 5th test digit: 2,000 of MNIST's 10,000 per style


def digit_photo_split(test: Split, style: str, seed: int = 0) -> Split:
    """Every DIGIT_PHOTO_EVERY-th test digit photographed in one style, prepared by the
    server's `centre_digit`. A fifth of the digits keeps `evaluate` to about a minute for the
    five styles on a 2-core machine (all 10,000 took over five minutes with training beside
    it); the interval says what the smaller sample costs."""
    from app.pipelines.digits import centre_digit

    rng = np.random.default_rng([seed, DIGIT_STYLES.index(style)])
    digits = np.rint(test.x[::DIGIT_PHOTO_EVERY, 0] * 255).astype(np.uint8)
    x = np.stack([centre_digit(digit_photo(d, style, rng)) for d in digits])
    return Split(
        x.astype(np.float32) / 255.0,
        test.y[::DIGIT_PHOTO_EVERY],
        f"{test.source}, every {DIGIT_PHOTO_EVERY}th digit drawn as "
        f"{style.replace('_', ' ')} photos, through the server",
        None if test.groups is None else test.groups[::DIGIT_PHOTO_EVERY],
    )


# -- audio ---------------------------------------------------------------------------------------


def through_8khz(waves: np.ndarray) -> np.ndarray:
    """Down to 8 kHz and back (soxr, as a phone line or a narrow-band recording would)."""
    import soxr

    out = np.empty_like(waves)
    for i, wave in enumerate(waves):
        back = soxr.resample(soxr.resample(wave, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)
        out[i, : len(back)] = back[: waves.shape[1]]
        out[i, len(back) :] = 0.0
    return out


def room_impulse(rng: np.random.Generator, rt60_s: float) -> np.ndarray:
    """A synthetic room: the direct sound, then exponentially decaying noise (−60 dB at rt60)."""
    n = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.normal(0, 1, n) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # 2 ms before the first reflection
    impulse = 0.35 * tail / np.sqrt(np.sum(tail**2))
    impulse[0] = 1.0
    return impulse.astype(np.float32)


def reverberate(waves: np.ndarray, impulses: list[np.ndarray]) -> np.ndarray:
    """Each wave convolved with its impulse (FFT), cut back to its length, level kept."""
    length = waves.shape[1]
    out = np.empty_like(waves)
    for i, (wave, impulse) in enumerate(zip(waves, impulses, strict=True)):
        size = length + len(impulse)
        wet = np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(impulse, size), size)[:length]
        peak_in, peak_out = np.abs(wave).max(), np.abs(wet).max()
        out[i] = wet * (peak_in / peak_out if peak_out > 0 else 1.0)
    return out


def phone_split(test: Split) -> Split:
    return Split(
        through_8khz(test.x), test.y, f"{test.source}, resampled through 8 kHz", test.groups
    )


def reverb_split(test: Split, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    impulses = [room_impulse(rng, float(rng.uniform(0.2, 0.6))) for _ in range(len(test))]
    return Split(
        reverberate(test.x, impulses),
        test.y,
        f"{test.source}, in a synthetic room (RT60 0.2-0.6 s)",
        test.groups,
    )
