"""Images: `POST /predict/image`, a multipart upload of one or more PNG/JPEG/BMP/GIF/WebP files.

The graph takes float32 NCHW in [0, 1]; normalisation is inside it. Plain models (CIFAR-10)
get the image resized (shorter side) and centre-cropped to the card's size. Cards with
`digit_centering` (MNIST) get the digit prepared the way MNIST itself was made, so that a phone
photo of a dark digit on paper works as well as a white-on-black MNIST sample: grayscale, invert
when the background is light, subtract the background, crop to the ink, scale the longer side
to 20 px keeping the aspect ratio, and place it in 28×28 with its centre of mass at the centre.
"""

from __future__ import annotations

import io

import numpy as np
from fastapi import APIRouter, Request
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from app.card import ImagePreprocessing, ModelCard
from app.errors import InvalidInput, PayloadTooLarge
from app.forms import multipart_openapi
from app.modalities.base import CardMismatch, Modality, Prediction, Upload
from app.modalities.uploads import UPLOAD_ERRORS, read_uploads
from app.predict import find_model, json_response, predictions_response, run_items
from app.routing import LeanRoute

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
CONTENT_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/bmp",
        "image/x-bmp",
        "image/x-ms-bmp",
        "image/gif",
        "image/webp",
    }
)
# MNIST geometry: the digit's longer side is 20 px, its centre of mass at (14, 14) of 28×28
# (measured on the official files: mean centre of mass 13.99, 14.01).
DIGIT_BOX = 20
DIGIT_CANVAS = 28
DIGIT_CENTRE = 14.0
# Photos are shrunk to this before looking for the digit: plenty for a 20-px result.
DIGIT_WORK_SIZE = 160
_EXIF_FORMATS = frozenset({"JPEG", "WEBP"})  # where cameras and phones write orientation
_ORIENTATION = 0x0112  # EXIF tag


class ImageModality(Modality):
    task = "image-classification"

    @classmethod
    def check_card(cls, card: ModelCard) -> None:
        prep = card.preprocessing
        if not isinstance(prep, ImagePreprocessing):
            raise CardMismatch(f"task {card.task} needs image preprocessing, card has {prep.kind}")
        expected = ["batch", prep.channels, prep.height, prep.width]
        if card.inputs[0].shape != expected or card.inputs[0].dtype != "float32":
            raise CardMismatch(
                f"input {card.inputs[0].name} must be float32 {expected} for this preprocessing, "
                f"card says {card.inputs[0].dtype} {card.inputs[0].shape}"
            )
        if prep.digit_centering and (prep.channels, prep.height, prep.width) != (1, 28, 28):
            raise CardMismatch("digit_centering needs a 1×28×28 input")

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        prep = self.card.preprocessing
        assert isinstance(prep, ImagePreprocessing)
        self.prep = prep
        self.mode = "L" if prep.channels == 1 else "RGB"
        self.max_pixels = self.settings.max_image_pixels

    def describe_failure(self, raw: Upload, exc: Exception) -> str:
        return f"{raw.name}: cannot decode image: {exc}"

    def decode(self, raw: Upload) -> np.ndarray:
        prep = self.prep
        if prep.digit_centering:
            draft = ("L", (DIGIT_WORK_SIZE, DIGIT_WORK_SIZE))
            return centre_digit(open_image(raw, self.max_pixels, draft))
        draft = (self.mode, (prep.width, prep.height))
        return fit_image(
            open_image(raw, self.max_pixels, draft), self.mode, prep.width, prep.height
        )

    def collate(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:  # type: ignore[override]
        batch = np.stack(arrays)
        if batch.dtype == np.uint8:
            batch = batch.astype(np.float32)
            batch *= np.float32(1 / 255)
        return {self.input_name: batch}

    def example(self) -> Upload:
        canvas = np.zeros((self.prep.height * 2, self.prep.width * 2, 3), np.uint8)
        canvas[8:-8, self.prep.width - 3 : self.prep.width + 3] = 200  # a bar, like a "1"
        buffer = io.BytesIO()
        Image.fromarray(canvas).save(buffer, format="PNG")
        return Upload("warm-up.png", buffer.getvalue())


# -- decoding ------------------------------------------------------------------------------


def open_image(
    upload: Upload, max_pixels: int, draft: tuple[str, tuple[int, int]] | None = None
) -> Image.Image:
    """Open and fully decode one upload, refusing decompression bombs before decoding.

    `draft` (mode, size) lets libjpeg decode a big photo straight at a reduced scale, no smaller
    than `size`. A photo's EXIF orientation is applied, so a phone picture arrives upright.
    """
    try:
        image = Image.open(io.BytesIO(upload.data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"{upload.name}: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidInput(
            f"{upload.name}: not a PNG, JPEG, BMP, GIF or WebP image (cannot identify it)"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"{upload.name}: {width}×{height} = {width * height} pixels, more than the limit "
            f"of {max_pixels} (SMS_MAX_IMAGE_PIXELS)"
        )
    try:
        if draft is not None and image.format == "JPEG":
            image.draft(*draft)
        image.load()
        if image.format in _EXIF_FORMATS and image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(
            f"{upload.name}: corrupt or truncated {image.format} data: {exc}"
        ) from None
    return image


def _without_alpha(image: Image.Image) -> Image.Image:
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


def fit_image(image: Image.Image, mode: str, width: int, height: int) -> np.ndarray:
    """Resize the shorter side and centre-crop to width×height; uint8 CHW."""
    image = _without_alpha(image).convert(mode)
    if image.size != (width, height):
        image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        return pixels[np.newaxis]
    return pixels.transpose(2, 0, 1)


def centre_digit(image: Image.Image) -> np.ndarray:
    """A digit prepared as MNIST digits were: uint8 [1, 28, 28], white on black.

    Works on 8-bit levels like MNIST itself; Pillow only scales the cropped digit.
    """
    gray = _without_alpha(image).convert("L")
    if max(gray.size) > DIGIT_WORK_SIZE:
        gray.thumbnail((DIGIT_WORK_SIZE, DIGIT_WORK_SIZE), Image.Resampling.BOX)
    width, height = gray.size
    canvas = np.zeros((1, DIGIT_CANVAS, DIGIT_CANVAS), np.uint8)
    found = _ink(np.frombuffer(gray.tobytes(), np.uint8).reshape(height, width))
    if found is None:
        return canvas  # a blank page: the model will not be sure, and will say so
    ink, noisy = found
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
    return canvas


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


# -- HTTP ----------------------------------------------------------------------------------


class ImagePrediction(Prediction):
    file: str = Field(description="The uploaded file's name.")


class ImagePredictionResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "mnist",
                    "version": "1.0.0",
                    "request_id": "5f0c2a9e41b37d86",
                    "predictions": [
                        {
                            "file": "digit.png",
                            "label": "7",
                            "probability": 0.991203,
                            "abstain": False,
                            "top_k": [
                                {"label": "7", "probability": 0.991203},
                                {"label": "9", "probability": 0.004711},
                                {"label": "1", "probability": 0.002093},
                            ],
                        }
                    ],
                }
            ]
        }
    )

    model: str
    version: str
    request_id: str
    predictions: list[ImagePrediction]


ENDPOINT = "/predict/image"
router = APIRouter(tags=["predict"], route_class=LeanRoute)
FORM_DOC = multipart_openapi(
    files_description="One or more images (PNG, JPEG, BMP, GIF or WebP), field name `files`.",
    model_default="mnist",
    model_description="Image-classification model, e.g. `mnist` or `cifar10`.",
    top_k_description="How many classes to list per image (capped at the label count).",
)
noop_router = APIRouter(tags=["benchmark"], route_class=LeanRoute)


@router.post(
    ENDPOINT,
    response_model=ImagePredictionResponse,
    openapi_extra=FORM_DOC,
    summary="Classify images",
    description=(
        "Upload one or more images as `multipart/form-data` (field `files`, repeatable) and pick "
        "the `model`. For `mnist` a photo or scan of a dark digit on light paper works as well "
        "as an MNIST-style white digit on black: it is cropped, scaled to 20×20 and centred like "
        "MNIST. Each file gets its label, probability, top-k and `abstain` (true = not sure)."
    ),
    responses=UPLOAD_ERRORS,
)
async def predict_image(request: Request) -> Response:
    received = await read_uploads(request, CONTENT_TYPES, "image")
    model = received.form.text("model", "mnist")
    top_k = received.form.positive_int("top_k", 3)
    served = find_model(request, model, ImageModality.task)
    uploads = received.uploads
    scores = await run_items(request, served, uploads)
    heads = [{"file": upload.name} for upload in uploads]
    return predictions_response(served, scores, top_k, heads)


@noop_router.post(
    "/noop/image",
    openapi_extra=FORM_DOC,
    summary="Parse an image upload, answer without inference (benchmark only)",
)
async def noop_image(request: Request) -> Response:
    received = await read_uploads(request, CONTENT_TYPES, "image")
    received.form.text("model", "mnist")
    received.form.positive_int("top_k", 3)
    return json_response({"ok": True, "items": len(received.uploads)})


MODALITY = ImageModality
