"""Speech preprocessing end to end, with a test model that recognises pure tones: if mixing,
resampling or the choice of window were wrong, it would hear a different tone."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from model_factory import tone, wav_bytes

from app.pipelines.audio import loudest_window


def classify(client: httpx.Client, data: bytes, name: str = "clip.wav") -> dict:
    response = client.post("/predict/speech", files={"files": (name, data, "audio/wav")})
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def test_stereo_is_mixed_to_mono(client: httpx.Client) -> None:
    left = tone(300, 1.0, 16000, amplitude=0.1)
    right = tone(900, 1.0, 16000, amplitude=0.6)
    stereo = np.stack([left, right], axis=1)
    assert classify(client, wav_bytes(stereo, 16000))["label"] == "900hz"


@pytest.mark.parametrize(
    ("frequency", "rate"),
    [(400, 8000), (1100, 44100), (600, 22050), (1300, 48000)],
)
def test_any_sample_rate_is_resampled_to_16k(
    client: httpx.Client, frequency: int, rate: int
) -> None:
    assert (
        classify(client, wav_bytes(tone(frequency, 1.0, rate), rate))["label"] == f"{frequency}hz"
    )


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_pcm_and_float_wavs(client: httpx.Client, subtype: str) -> None:
    data = wav_bytes(tone(500, 1.0, 16000), 16000, subtype=subtype)
    assert classify(client, data)["label"] == "500hz"


def test_short_clip_is_padded(client: httpx.Client) -> None:
    prediction = classify(client, wav_bytes(tone(1000, 0.3, 16000), 16000))
    assert prediction["label"] == "1000hz"


def test_long_clip_gives_its_loudest_second(client: httpx.Client) -> None:
    quiet = tone(300, 1.5, 16000, amplitude=0.05)
    loud = tone(1200, 1.0, 16000, amplitude=0.6)
    clip = np.concatenate([quiet, loud, tone(300, 2.0, 16000, amplitude=0.05)])
    assert classify(client, wav_bytes(clip, 16000))["label"] == "1200hz"


def test_several_clips_in_one_request(client: httpx.Client) -> None:
    files = [
        ("files", (f"{f}.wav", wav_bytes(tone(f, 1.0, 16000), 16000), "audio/x-wav"))
        for f in (200, 800, 1300)
    ]
    response = client.post("/predict/speech", files=files, data={"top_k": "2"})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == ["200hz", "800hz", "1300hz"]
    assert [p["file"] for p in predictions] == ["200.wav", "800.wav", "1300.wav"]
    assert all(len(p["top_k"]) == 2 for p in predictions)


def test_loudest_window_picks_the_most_energetic_span() -> None:
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 0.01, 50_000).astype(np.float32)
    signal[31_000:33_000] += 1.0
    window = loudest_window(signal, 16_000)
    assert window.shape == (16_000,) and window.dtype == np.float32
    start = int(np.flatnonzero(np.isin(signal, window[:8]))[0])
    assert start <= 31_000 and start + 16_000 >= 33_000


def test_loudest_window_pads_short_signals_at_the_end() -> None:
    window = loudest_window(np.ones(100, np.float32), 16_000)
    assert window.shape == (16_000,)
    assert window[:100].tolist() == [1.0] * 100 and not window[100:].any()


def test_unreadable_audio_is_named_without_python_reprs(client: httpx.Client) -> None:
    answer = client.post(
        "/predict/speech", files={"files": ("notes.wav", b"not a wav at all" * 10, "audio/wav")}
    )
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert message.startswith("notes.wav: not a readable WAV file: ")
    assert "object at 0x" not in message and "<_io" not in message
    assert "Format not recognised" in message
