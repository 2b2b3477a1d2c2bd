"""Audio: one or more WAV (or FLAC) files per request.

Anything soundfile reads (PCM 8/16/24/32-bit, float, any sample rate, any channel count) is
mixed down to mono, resampled to the card's rate with soxr (a proper band-limited resampler),
and cut to the card's clip length: shorter clips are zero-padded at the end (as in training),
longer ones give their loudest window. The graph takes float32 `waveform` [batch, samples].
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import soundfile
import soxr

from app.card import AudioPreprocessing, ModelCard
from app.errors import InvalidInput, PayloadTooLarge
from app.pipelines.base import CardMismatch, Pipeline, Upload

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


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


class AudioPipeline(Pipeline):
    task = "audio-classification"
    request_kind = "files"
    accepted_types = CONTENT_TYPES
    item_noun = "audio"

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
        raise InvalidInput(f"{upload.name}: not a readable WAV file: {_reason(exc)}") from None
    if pcm.shape[0] == 0:
        raise InvalidInput(f"{upload.name}: the file holds no samples")
    if not np.isfinite(pcm).all():
        raise InvalidInput(f"{upload.name}: the file holds NaN or infinite samples")
    return pcm, rate


def _reason(exc: Exception) -> str:
    """libsndfile's own words, without the Python repr of our in-memory buffer that soundfile
    puts in them ("Error opening <_io.BytesIO object at 0x…>: Format not recognised.")."""
    reason = getattr(exc, "error_string", None) or str(exc)
    return _OBJECT_REPR.sub("the file", reason).removeprefix("Error opening the file: ")


def loudest_window(signal: np.ndarray, length: int) -> np.ndarray:
    """Exactly `length` samples: zero-padded at the end, or the window with the most energy."""
    signal = np.asarray(signal, dtype=np.float32)
    if len(signal) <= length:
        return np.pad(signal, (0, length - len(signal)))
    energy = np.concatenate(([0.0], np.cumsum(np.square(signal, dtype=np.float64))))
    window_energy = energy[length:] - energy[:-length]
    start = int(np.argmax(window_energy))
    return signal[start : start + length]
