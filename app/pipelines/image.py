"""Images: one or more PNG/JPEG/BMP/GIF/WebP files per request.

The graph takes float32 NCHW in [0, 1]; normalisation is inside it. Plain models (CIFAR-10)
get the image resized (shorter side) and centre-cropped to the card's size. Cards with
`digit_centering` (MNIST) get the digit prepared as MNIST was (app.pipelines.digits).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.card import ImagePreprocessing, ModelCard
from app.errors import InvalidInput, PayloadTooLarge
from app.pipelines.base import CardMismatch, Pipeline, Upload
from app.pipelines.digits import DIGIT_WORK_SIZE, centre_digit_checked, without_alpha

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
_EXIF_FORMATS = frozenset({"JPEG", "WEBP"})  # where cameras and phones write orientation
_ORIENTATION = 0x0112  # EXIF tag


class ImagePipeline(Pipeline):
    task = "image-classification"
    request_kind = "files"
    accepted_types = CONTENT_TYPES
    item_noun = "image"

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
        return self.decode_checked(raw)[0]

    def decode_checked(self, raw: Upload) -> tuple[np.ndarray, str | None]:
        prep = self.prep
        if prep.digit_centering:
            draft = ("L", (DIGIT_WORK_SIZE, DIGIT_WORK_SIZE))
            return centre_digit_checked(open_image(raw, self.max_pixels, draft))
        return self._fit(raw), None

    def _fit(self, raw: Upload) -> np.ndarray:
        prep = self.prep
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


def fit_image(image: Image.Image, mode: str, width: int, height: int) -> np.ndarray:
    """Resize the shorter side and centre-crop to width×height; uint8 CHW."""
    image = without_alpha(image).convert(mode)
    if image.size != (width, height):
        image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        return pixels[np.newaxis]
    return pixels.transpose(2, 0, 1)
