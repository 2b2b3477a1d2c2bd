"""MNIST-style digit preparation: a photo of a dark digit on light paper and an MNIST-style
white-on-black digit must reach the model as the same 28×28 picture."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_factory import digit_strokes, image_bytes, image_model
from PIL import Image
from serving_harness import REPO_ROOT, running_server, settings_for

from app.pipelines.digits import centre_digit


def one_stroke() -> np.ndarray:
    canvas = np.zeros((28, 28), np.uint8)
    canvas[6:22, 12:15] = 255
    return canvas


def ring() -> np.ndarray:
    y, x = np.mgrid[:28, :28]
    distance = np.hypot(y - 13, x - 15)
    return ((distance > 5) & (distance < 8)).astype(np.uint8) * 255


SHAPES = {"0": ring, "1": one_stroke, "7": digit_strokes}


def photo_of(shape: np.ndarray, seed: int = 0) -> Image.Image:
    """The digit written dark on light, uneven paper, large, off-centre, noisy, as a JPEG."""
    rng = np.random.default_rng(seed)
    big = np.kron(shape, np.ones((7, 7))).astype(np.float32) / 255  # 196×196, ink = 1
    page = np.zeros((320, 280), np.float32)
    page[40:236, 20:216] = big
    light = np.linspace(0.75, 0.92, page.shape[1])[np.newaxis, :]  # lit from one side
    pixels = light * (1 - 0.8 * page) + rng.normal(0, 0.02, page.shape)
    data = image_bytes(np.clip(pixels * 255, 0, 255).astype(np.uint8), "JPEG", quality=85)
    return Image.open(io.BytesIO(data))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two prepared digits, allowing the one-pixel difference that rounding a
    centre of mass of x.5 either way can make."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    return max(
        float(np.corrcoef(a.ravel(), np.roll(b, (dy, dx), axis=(0, 1)).ravel())[0, 1])
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    mass = pixels.sum()
    rows, cols = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
    return float((rows * pixels).sum() / mass), float((cols * pixels).sum() / mass)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_photo_and_mnist_style_digit_match(name: str) -> None:
    mnist_style = centre_digit(Image.fromarray(SHAPES[name]()))[0].astype(np.float32)
    from_photo = centre_digit(photo_of(SHAPES[name]()))[0].astype(np.float32)
    assert similarity(mnist_style, from_photo) > 0.9
    for prepared in (mnist_style, from_photo):
        rows = np.flatnonzero(prepared.any(axis=1))
        cols = np.flatnonzero(prepared.any(axis=0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (20, 21)  # longer side → 20
        centre_y, centre_x = centre_of_mass(prepared)
        assert abs(centre_y - 14) <= 0.75 and abs(centre_x - 14) <= 0.75
        assert prepared[0].max() == 0 and prepared.max() >= 200  # white on black


def test_mnist_style_digit_is_left_as_it_is() -> None:
    prepared = centre_digit(Image.fromarray(SHAPES["7"]()))[0]
    assert np.array_equal(centre_digit(Image.fromarray(prepared))[0], prepared)


def test_blank_page_gives_an_empty_canvas() -> None:
    paper = np.full((100, 80), 230, np.uint8)
    assert not centre_digit(Image.fromarray(paper)).any()


def test_strokes_on_a_transparent_canvas() -> None:
    rgba = np.zeros((56, 56, 4), np.uint8)
    rgba[..., 3] = np.kron(digit_strokes(), np.ones((2, 2), np.uint8))  # black ink, alpha only
    prepared = centre_digit(Image.open(io.BytesIO(image_bytes(rgba))))[0]
    expected = centre_digit(Image.fromarray(digit_strokes()))[0]
    assert similarity(prepared, expected) > 0.9


def _mnist_test_images() -> Path | None:
    data_dir = Path(os.environ.get("SMS_DATA_DIR", REPO_ROOT.parent / "shared" / "datasets"))
    path = data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
    return path if path.is_file() else None


@pytest.mark.data
@pytest.mark.skipif(
    _mnist_test_images() is None,
    reason="needs the shared datasets: MNIST test files not found (set SMS_DATA_DIR)",
)
def test_real_mnist_digits_come_through_unchanged() -> None:
    """MNIST was made this way, so preparing an MNIST digit again should change nothing."""
    raw = gzip.decompress(_mnist_test_images().read_bytes())  # type: ignore[union-attr]
    digits = np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28)[:500]
    unchanged = sum(np.array_equal(centre_digit(Image.fromarray(d))[0], d) for d in digits)
    assert unchanged >= 0.85 * len(digits), unchanged


def test_a_photographed_digit_is_recognised_over_http(tmp_path: Path) -> None:
    """A template-matching model (one template per shape, built from the prepared MNIST-style
    digits) must recognise the photos; without inversion or centring it would not."""
    templates = np.zeros((784, 10), np.float32)
    for name, shape in SHAPES.items():
        prepared = centre_digit(Image.fromarray(shape()))[0].astype(np.float32).ravel() / 255
        centred = prepared - prepared.mean()
        templates[:, int(name)] = 8 * centred / np.linalg.norm(centred)
    image_model(tmp_path, "mnist", weights=templates, abstain_threshold=0.3)
    with running_server(settings_for(tmp_path)) as url, httpx.Client(base_url=url) as http:
        for name, shape in SHAPES.items():
            buffer = io.BytesIO()
            photo_of(shape(), seed=int(name)).save(buffer, format="JPEG")
            response = http.post(
                "/predict/image",
                files={"files": (f"photo-{name}.jpg", buffer.getvalue(), "image/jpeg")},
            )
            assert response.status_code == 200, response.text
            assert response.json()["predictions"][0]["label"] == name


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation() -> None:
    """Phones store pictures sideways and say so in EXIF; the digit must arrive upright."""
    from PIL import Image as PILImage

    upright = photo_of(SHAPES["7"]())
    sideways = upright.transpose(PILImage.Transpose.ROTATE_90)  # as the sensor stored it
    exif = PILImage.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffers = []
    for picture, extra in ((upright, {}), (sideways, {"exif": exif.tobytes()})):
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=95, **extra)
        buffers.append(buffer.getvalue())
    from app.pipelines.base import Upload
    from app.pipelines.image import open_image

    prepared = [centre_digit(open_image(Upload("p.jpg", data), 10**8))[0] for data in buffers]
    assert similarity(prepared[0], prepared[1]) > 0.95
    ignoring_exif = centre_digit(PILImage.open(io.BytesIO(buffers[1])))[0]
    assert similarity(prepared[0], ignoring_exif) < 0.5  # the test would notice a sideways 7
