"""Spoken keywords, 12 classes. Raw 16-kHz waveform in; the log-mel front end (STFT as a
convolution with fixed DFT kernels) is part of the network, so the server feeds samples.

Users speak into phones and laptops, so training also hears the clips in a synthetic room
(reverb), through another microphone (a random smooth equaliser curve) and band-limited as a
phone line (100-400 Hz to 3-4 kHz); the card reports accuracy on the test clips resampled
through 8 kHz and in a room beside the clean figure (training/robustness.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.card import BATCH, AudioPreprocessing
from training import robustness
from training.data import Dataset, Split, speech
from training.tasks.base import Task

SAMPLE_RATE = 16000
WINDOW, HOP, N_FFT, N_MELS = 400, 160, 512, 40  # 25 ms Hann window, 10 ms hop → 40 x 101


def mel_filterbank(
    n_mels: int, n_fft: int, rate: int, f_min: float = 20.0, f_max: float | None = None
) -> np.ndarray:
    """HTK-mel triangular filters, (n_mels, n_fft // 2 + 1)."""
    f_max = f_max or rate / 2

    def to_mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    mels = np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(bins)), dtype=np.float32)
    for m in range(n_mels):
        lo, mid, hi = hz[m], hz[m + 1], hz[m + 2]
        fb[m] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return fb


class LogMel(nn.Module):
    """Waveform (B, 16000) → normalised log-mel (B, 1, 40, 101). Exports to plain Conv/MatMul."""

    def __init__(self) -> None:
        super().__init__()
        n = np.arange(WINDOW)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / WINDOW)
        k = np.arange(N_FFT // 2 + 1)[:, None]
        angle = 2 * np.pi * k * n[None, :] / N_FFT
        kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])
        self.register_buffer("dft", torch.tensor(kernels[:, None, :], dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(mel_filterbank(N_MELS, N_FFT, SAMPLE_RATE)))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        x = F.pad(wave.unsqueeze(1), (WINDOW // 2, WINDOW // 2))
        spec = F.conv1d(x, self.dft, stride=HOP)  # (B, 2 * 257, 101)
        half = spec.shape[1] // 2
        power = spec[:, :half] ** 2 + spec[:, half:] ** 2
        return torch.log(torch.matmul(self.mel, power) + 1e-6)  # (B, 40, 101)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return ((self.log_mel(wave) - self.mean) / self.std).unsqueeze(1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class KeywordNet(nn.Module):
    """Log-mel front end, SpecAugment while training, a plain residual CNN."""

    def __init__(
        self,
        widths: tuple[int, ...],
        num_classes: int,
        dropout: float,
        freq_masks: int = 2,
        freq_width: int = 7,
        time_masks: int = 2,
        time_width: int = 12,
    ) -> None:
        super().__init__()
        self.frontend = LogMel()
        self.spec_augment = (freq_masks, freq_width, time_masks, time_width)
        # a stride-2 stem: 4x fewer positions, which this 2-core CPU needs (see the notes)
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks, c_in = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(ResBlock(c_in, w, 2 if i > 0 and w != c_in else 1))
            c_in = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes)
        )

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        freq_masks, freq_width, time_masks, time_width = self.spec_augment
        b, _, n_freq, n_time = x.shape
        keep = torch.ones(b, 1, n_freq, n_time, device=x.device)
        f_idx = torch.arange(n_freq, device=x.device)[None, :]
        t_idx = torch.arange(n_time, device=x.device)[None, :]
        for _ in range(freq_masks):
            width = torch.randint(0, freq_width + 1, (b, 1), device=x.device)
            start = (torch.rand(b, 1, device=x.device) * (n_freq - width)).long()
            keep *= (~((f_idx >= start) & (f_idx < start + width))).float()[:, None, :, None]
        for _ in range(time_masks):
            width = torch.randint(0, time_width + 1, (b, 1), device=x.device)
            start = (torch.rand(b, 1, device=x.device) * (n_time - width)).long()
            keep *= (~((t_idx >= start) & (t_idx < start + width))).float()[:, None, None, :]
        return x * keep

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.frontend(wave)
        if self.training:
            x = self.mask(x).contiguous(memory_format=torch.channels_last)
        return self.head(self.blocks(self.stem(x)))


class SpeechTask(Task):
    name = "speech"
    card_task = "audio-classification"
    description = (
        "Spoken keyword spotting, 12 classes (10 words, silence, unknown), from one "
        "second of 16-kHz audio; log-mel front end inside the graph."
    )
    input_name = "waveform"
    input_shape: ClassVar[list[int | str]] = [BATCH, SAMPLE_RATE]
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "epochs": 100,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "widths": [20, 20, 40, 40, 80, 80],
        "dropout": 0.2,
        "shift_ms": 100,
        "noise_p": 0.8,
        "snr_db": [5, 20],
        "gain_db": 6,
        "warmup": 0.05,
        "reverb_p": 0.25,
        "rt60_s": [0.15, 0.7],
        "mic_p": 0.3,
        "mic_db": 6,
        "phone_p": 0.25,
    }

    def load_data(self, data_dir: Path, download: bool, seed: int) -> Dataset:
        data = speech.load(data_dir, download, seed=seed)
        self.noise = [torch.from_numpy(n) for n in data.noise]
        return data.dataset

    def prepare(self, dataset: Dataset, config: dict[str, Any]) -> None:
        self.config = config
        self.rng = np.random.default_rng(config["seed"])
        counts = np.bincount(dataset.train.y, minlength=len(dataset.labels)).astype(np.float64)
        self.class_weights = torch.tensor(
            counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32
        )
        frontend = LogMel()
        with torch.no_grad():
            feats = frontend.log_mel(torch.from_numpy(dataset.train.x[:2000]))
        self.stats = (float(feats.mean()), float(feats.std()))

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        model = KeywordNet(tuple(config["widths"]), len(speech.LABELS), config["dropout"])
        model = model.to(memory_format=torch.channels_last)
        model.frontend.mean.fill_(self.stats[0])
        model.frontend.std.fill_(self.stats[1])
        return model

    def loss_fn(self, config: dict[str, Any]) -> nn.Module:
        return nn.CrossEntropyLoss(
            weight=self.class_weights, label_smoothing=config["label_smoothing"]
        )

    def augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, rng, b = self.config, self.rng, x.shape[0]
        shift = int(cfg["shift_ms"] * SAMPLE_RATE / 1000)
        offsets = torch.from_numpy(rng.integers(-shift, shift + 1, b)).to(x.device)
        idx = torch.arange(x.shape[1], device=x.device)[None, :] + shift - offsets[:, None]
        x = torch.gather(F.pad(x, (shift, shift)), 1, idx)
        x = self._reverb(x)
        noise = torch.stack([self._noise_window(x.shape[1]) for _ in range(b)]).to(x.device)
        snr = torch.from_numpy(rng.uniform(*cfg["snr_db"], b).astype(np.float32)).to(x.device)
        p_signal = x.pow(2).mean(dim=1).clamp_min(1e-8)
        p_noise = noise.pow(2).mean(dim=1).clamp_min(1e-8)
        scale = torch.sqrt(p_signal / (p_noise * 10 ** (snr / 10)))
        use = torch.from_numpy(rng.random(b) < cfg["noise_p"]).to(x.device)
        x = x + noise * (scale * use)[:, None]
        x = self._equalise(x)
        gain = torch.from_numpy(
            rng.uniform(-cfg["gain_db"], cfg["gain_db"], b).astype(np.float32)
        ).to(x.device)
        return x * (10 ** (gain / 20))[:, None], y

    def _reverb(self, x: torch.Tensor) -> torch.Tensor:
        chosen = np.flatnonzero(self.rng.random(x.shape[0]) < self.config["reverb_p"])
        if len(chosen) == 0:
            return x
        impulses = [
            robustness.room_impulse(self.rng, float(self.rng.uniform(*self.config["rt60_s"])))
            for _ in chosen
        ]
        wet = robustness.reverberate(x[chosen].cpu().numpy(), impulses)
        x = x.clone()
        x[torch.from_numpy(chosen).to(x.device)] = torch.from_numpy(wet).to(x.device)
        return x

    def _equalise(self, x: torch.Tensor) -> torch.Tensor:
        """Another microphone (a smooth random gain curve, ±mic_db) and/or a phone line (a
        band-pass with random edges), as one multiplication of the spectrum."""
        cfg, rng, (b, n) = self.config, self.rng, x.shape
        bins = n // 2 + 1
        hz = torch.linspace(0, SAMPLE_RATE / 2, bins, device=x.device)
        gain = torch.ones(b, bins, device=x.device)
        mic = torch.from_numpy(rng.random(b) < cfg["mic_p"]).to(x.device)
        points = torch.from_numpy(rng.uniform(-1, 1, (b, 1, 8)).astype(np.float32)) * cfg["mic_db"]
        curve = F.interpolate(points, size=bins, mode="linear", align_corners=True)[:, 0]
        gain = torch.where(mic[:, None], gain * 10 ** (curve.to(x.device) / 20), gain)
        phone = torch.from_numpy(rng.random(b) < cfg["phone_p"]).to(x.device)
        high = torch.from_numpy(rng.uniform(3000, 4000, (b, 1)).astype(np.float32)).to(x.device)
        low = torch.from_numpy(rng.uniform(100, 400, (b, 1)).astype(np.float32)).to(x.device)
        band = torch.sigmoid((high - hz) / 60) * torch.sigmoid((hz - low) / 30)
        gain = torch.where(phone[:, None], gain * band, gain)
        if not bool((mic | phone).any()):
            return x
        return torch.fft.irfft(torch.fft.rfft(x, dim=1) * gain, n=n, dim=1)

    def robustness_splits(self, test: Split) -> dict[str, Split]:
        return {
            "phone_8khz": robustness.phone_split(test),
            "reverb": robustness.reverb_split(test),
        }

    def _noise_window(self, length: int) -> torch.Tensor:
        rec = self.noise[self.rng.integers(len(self.noise))]
        start = self.rng.integers(0, len(rec) - length)
        return rec[start : start + length]

    def preprocessing(self) -> AudioPreprocessing:
        return AudioPreprocessing(sample_rate=SAMPLE_RATE, clip_samples=SAMPLE_RATE)
