"""Audio: `POST /predict/speech`, a multipart upload of WAV files (field `files`).

Anything soundfile reads (PCM 8/16/24/32-bit, float, any sample rate, any channel count) is
mixed down to mono, resampled to the card's rate with soxr (a proper band-limited resampler),
and cut to the card's clip length: shorter clips are zero-padded at the end (as in training),
longer ones give their loudest window. The graph takes float32 `waveform` [batch, samples].
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import soundfile
import soxr
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from app.card import AudioPreprocessing, ModelCard
from app.errors import InvalidInput, PayloadTooLarge
from app.forms import multipart_openapi
from app.modalities.base import CardMismatch, Modality, Prediction, Upload
from app.modalities.uploads import UPLOAD_ERRORS, read_uploads
from app.predict import find_model, json_response, predictions_response, run_items
from app.routing import LeanRoute

CONTENT_TYPES = frozenset(
    {
        "audio/wav",
        "audio/wave",
        "audio/x-wav",
        "audio/vnd.wave",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)


class AudioModality(Modality):
    task = "audio-classification"

    @classmethod
    def check_card(cls, card: ModelCard) -> None:
        prep = card.preprocessing
        if not isinstance(prep, AudioPreprocessing):
            raise CardMismatch(f"task {card.task} needs audio preprocessing, card has {prep.kind}")
        spec = card.inputs[0]
        if spec.dtype != "float32" or spec.shape != ["batch", prep.clip_samples]:
            raise CardMismatch(
                f"input {spec.name} must be float32 ['batch', {prep.clip_samples}], card says "
                f"{spec.dtype} {spec.shape}"
            )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        prep = self.card.preprocessing
        assert isinstance(prep, AudioPreprocessing)
        self.sample_rate = prep.sample_rate
        self.clip_samples = prep.clip_samples
        self.max_seconds = self.settings.max_audio_seconds

    def describe_failure(self, raw: Upload, exc: Exception) -> str:
        return f"{raw.name}: cannot decode audio: {exc}"

    def decode(self, raw: Upload) -> np.ndarray:
        pcm, rate = read_audio(raw, self.max_seconds)
        mono = pcm.mean(axis=1) if pcm.shape[1] > 1 else pcm[:, 0]
        if rate != self.sample_rate:
            mono = soxr.resample(mono, rate, self.sample_rate)
        return loudest_window(mono, self.clip_samples)

    def example(self) -> Upload:
        seconds = np.arange(self.sample_rate) / self.sample_rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)
        buffer = io.BytesIO()
        soundfile.write(buffer, tone, self.sample_rate, format="WAV", subtype="PCM_16")
        return Upload("warm-up.wav", buffer.getvalue())


def read_audio(upload: Upload, max_seconds: float) -> tuple[np.ndarray, int]:
    """float32 [frames, channels] and the sample rate; 413 past `max_seconds`, 422 if unreadable."""
    try:
        with soundfile.SoundFile(io.BytesIO(upload.data)) as audio:
            rate = audio.samplerate
            if audio.frames > max_seconds * rate:
                raise PayloadTooLarge(
                    f"{upload.name}: {audio.frames / rate:.1f} s of audio; the limit is "
                    f"{max_seconds:g} s (SMS_MAX_AUDIO_SECONDS)"
                )
            pcm = audio.read(dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError) as exc:  # LibsndfileError is a RuntimeError
        raise InvalidInput(f"{upload.name}: not a readable WAV file: {exc}") from None
    if pcm.shape[0] == 0:
        raise InvalidInput(f"{upload.name}: the file holds no samples")
    if not np.isfinite(pcm).all():
        raise InvalidInput(f"{upload.name}: the file holds NaN or infinite samples")
    return pcm, rate


def loudest_window(signal: np.ndarray, length: int) -> np.ndarray:
    """Exactly `length` samples: zero-padded at the end, or the window with the most energy."""
    signal = np.asarray(signal, dtype=np.float32)
    if len(signal) <= length:
        return np.pad(signal, (0, length - len(signal)))
    energy = np.concatenate(([0.0], np.cumsum(np.square(signal, dtype=np.float64))))
    window_energy = energy[length:] - energy[:-length]
    start = int(np.argmax(window_energy))
    return signal[start : start + length]


# -- HTTP ----------------------------------------------------------------------------------


class SpeechPrediction(Prediction):
    file: str = Field(description="The uploaded file's name.")


class SpeechResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "speech",
                    "version": "1.0.0",
                    "request_id": "5f0c2a9e41b37d86",
                    "predictions": [
                        {
                            "file": "yes.wav",
                            "label": "yes",
                            "probability": 0.991203,
                            "abstain": False,
                            "top_k": [
                                {"label": "yes", "probability": 0.991203},
                                {"label": "left", "probability": 0.004711},
                                {"label": "unknown", "probability": 0.002093},
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
    predictions: list[SpeechPrediction]


ENDPOINT = "/predict/speech"
router = APIRouter(tags=["predict"], route_class=LeanRoute)
FORM_DOC = multipart_openapi(
    files_description="One or more WAV files (any PCM or float WAV, any rate), field `files`.",
    model_default="speech",
    model_description="Audio-classification model.",
    top_k_description="How many keywords to list per clip (capped at the label count).",
)
noop_router = APIRouter(tags=["benchmark"], route_class=LeanRoute)


@router.post(
    ENDPOINT,
    response_model=SpeechResponse,
    openapi_extra=FORM_DOC,
    summary="Recognise spoken keywords",
    description=(
        "Upload WAV files as `multipart/form-data` (field `files`, repeatable). Stereo is mixed "
        "to mono, any sample rate is resampled to 16 kHz, clips shorter than 1 s are padded and "
        "longer ones give their loudest 1-s window. Each file gets its keyword, probability, "
        "top-k and `abstain` (true = not sure)."
    ),
    responses=UPLOAD_ERRORS,
)
async def predict_speech(request: Request) -> Response:
    received = await read_uploads(request, CONTENT_TYPES, "audio")
    model = received.form.text("model", "speech")
    top_k = received.form.positive_int("top_k", 3)
    served = find_model(request, model, AudioModality.task)
    uploads = received.uploads
    scores = await run_items(request, served, uploads)
    heads = [{"file": upload.name} for upload in uploads]
    return predictions_response(served, scores, top_k, heads)


@noop_router.post(
    "/noop/speech",
    openapi_extra=FORM_DOC,
    summary="Parse a speech upload, answer without inference (benchmark only)",
)
async def noop_speech(request: Request) -> Response:
    received = await read_uploads(request, CONTENT_TYPES, "audio")
    received.form.text("model", "speech")
    received.form.positive_int("top_k", 3)
    return json_response({"ok": True, "items": len(received.uploads)})


MODALITY = AudioModality
