"""The in-graph log-mel front end equals a textbook numpy STFT → mel → log."""

from __future__ import annotations

import numpy as np
import torch

from training.tasks.speech import HOP, N_FFT, N_MELS, WINDOW, LogMel, mel_filterbank


def numpy_log_mel(wave: np.ndarray) -> np.ndarray:
    padded = np.pad(wave, (WINDOW // 2, WINDOW // 2))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)
    frames = np.stack(
        [padded[i : i + WINDOW] * window for i in range(0, len(padded) - WINDOW + 1, HOP)]
    )
    power = np.abs(np.fft.rfft(frames, n=N_FFT)) ** 2  # (101, 257)
    return np.log(mel_filterbank(N_MELS, N_FFT, 16000) @ power.T + 1e-6)


def test_log_mel_matches_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=16000)).astype(np.float32)
    got = LogMel().log_mel(torch.from_numpy(wave[None]))[0].numpy()
    assert got.shape == (40, 101)
    np.testing.assert_allclose(got, numpy_log_mel(wave.astype(np.float64)), atol=2e-3)


def test_mel_filters_cover_the_spectrum() -> None:
    fb = mel_filterbank(N_MELS, N_FFT, 16000)
    assert fb.shape == (40, 257)
    assert (fb.max(axis=1) > 0.5).all()  # no empty filter
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()
