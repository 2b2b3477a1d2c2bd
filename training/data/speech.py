"""Speech Commands, 12 classes, split by speaker.

Reads torchaudio's SPEECHCOMMANDS folder layout (`.wav` or `.flac`): the shared
`speech_commands/` folder, or `SpeechCommands/speech_commands_v0.02/` (the official archive,
fetched with --download). Speakers (the hash before `_nohash_`) go to train / validation / test
by `sha1(speaker) mod 100` (< 80, < 90, rest), so no voice is on two sides. Silence clips are
one-second windows of the background-noise recordings; they go to a split by where the window
lies in its recording (first 80% / next 10% / last 10%; windows straddling a boundary are
dropped), and augmentation noise is cut from the first 80% only, so silence is never flattered.
"""

from __future__ import annotations

import csv
import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from training.data import DataNotFoundError, Dataset, Split, download

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
LABELS = [*KEYWORDS, "silence", "unknown"]
SAMPLE_RATE = 16000
ARCHIVE_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SPLITS = ("train", "val", "test")
TRAIN_NOISE_FRACTION = 0.8


def speaker_split(speaker: str) -> str:
    bucket = int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def window_split(start: int, length: int, total: int) -> str | None:
    """Which split a noise window belongs to, by its place in the recording."""
    end = start + length
    if end <= 0.8 * total:
        return "train"
    if start >= 0.8 * total and end <= 0.9 * total:
        return "val"
    if start >= 0.9 * total:
        return "test"
    return None


def read_clip(path: Path) -> np.ndarray:
    """One second of mono float32 audio at 16 kHz (padded or cut at the end)."""
    pcm, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {SAMPLE_RATE}")
    pcm = pcm.mean(axis=1)[:SAMPLE_RATE]
    return np.pad(pcm, (0, SAMPLE_RATE - len(pcm)))


@dataclass
class SpeechData:
    dataset: Dataset
    noise: list[np.ndarray]  # training parts of the background recordings, for augmentation


def _root(data_dir: Path, download_missing: bool) -> Path:
    for root in (
        data_dir / "speech_commands",
        data_dir / "SpeechCommands" / "speech_commands_v0.02",
    ):
        if (root / "_background_noise_").is_dir():
            return root
    if download_missing:
        root = data_dir / "SpeechCommands" / "speech_commands_v0.02"
        archive = download(ARCHIVE_URL, data_dir / "speech_commands_v0.02.tar.gz")
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        return root
    raise DataNotFoundError(
        f"Speech Commands not found under {data_dir}: expected speech_commands/ or "
        "SpeechCommands/speech_commands_v0.02/ (torchaudio's layout: <word>/<speaker>_nohash_<n>"
        ".wav|.flac and _background_noise_/); pass --download to fetch the official archive"
    )


def _silence_from_manifest(root: Path) -> dict[str, list[Path]]:
    """The shared folder's `_silence_` clips, split by where they were cut from."""
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    with open(root / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    lengths = {r["path"]: int(r["samples"]) for r in rows if r["label"] == "_background_noise_"}
    for r in rows:
        if r["label"] == "_silence_" and r["noise_recording"]:
            split = window_split(int(r["noise_offset"]), SAMPLE_RATE, lengths[r["noise_recording"]])
            if split:
                out[split].append(root / r["path"])
    return out


def load(
    data_dir: Path,
    download_missing: bool = False,
    silence_per_split: tuple = (320, 40, 40),
    seed: int = 0,
) -> SpeechData:
    root = _root(data_dir, download_missing)
    xs: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    ys: dict[str, list[int]] = {s: [] for s in SPLITS}
    groups: dict[str, list[str]] = {s: [] for s in SPLITS}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        label = LABELS.index(folder.name) if folder.name in KEYWORDS else LABELS.index("unknown")
        for path in sorted([*folder.glob("*.wav"), *folder.glob("*.flac")]):
            speaker = path.stem.split("_nohash_")[0]
            split = speaker_split(speaker)
            xs[split].append(read_clip(path))
            ys[split].append(label)
            groups[split].append(speaker)

    recordings = sorted((root / "_background_noise_").glob("*.[wf][al][va]*"))
    noise_full = {p.name: read_clip_long(p) for p in recordings}
    silence = LABELS.index("silence")
    if (root / "_silence_").is_dir() and (root / "manifest.csv").exists():
        for split, paths in _silence_from_manifest(root).items():
            for path in paths:
                xs[split].append(read_clip(path))
                ys[split].append(silence)
                groups[split].append("silence")
        silence_source = "the _silence_ clips, split by their window's place in its recording"
    else:  # the official archive has no silence clips: cut them the same way
        rng = np.random.default_rng(seed)
        for split, count in zip(SPLITS, silence_per_split, strict=True):
            for i in range(count):
                wave = noise_full[recordings[i % len(recordings)].name]
                lo, hi = {"train": (0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}[split]
                start = rng.integers(int(lo * len(wave)), int(hi * len(wave)) - SAMPLE_RATE)
                xs[split].append(wave[start : start + SAMPLE_RATE] * rng.uniform(0, 1))
                ys[split].append(silence)
                groups[split].append("silence")
        silence_source = "windows cut from the background recordings by the same 80/10/10 rule"

    def split_of(name: str) -> Split:
        speakers = sorted({g for g in groups[name] if g != "silence"})
        return Split(
            np.stack(xs[name]),
            np.asarray(ys[name], dtype=np.int64),
            f"{len(speakers)} speakers, sha1(speaker) mod 100 bucket "
            f"{ {'train': '0-79', 'val': '80-89', 'test': '90-99'}[name] }; silence: "
            f"{silence_source}",
            np.asarray(groups[name]),
        )

    noise = [w[: int(TRAIN_NOISE_FRACTION * len(w))] for w in noise_full.values()]
    dataset = Dataset(
        name="Speech Commands v0.02 (12-class task)",
        labels=LABELS,
        train=split_of("train"),
        val=split_of("val"),
        test=split_of("test"),
        citation="P. Warden: Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition, "
        "arXiv:1804.03209",
        notes=[
            f"clips read from {root.name}/ (mostly official test clips, re-split by speaker)",
            "augmentation noise cut from the first 80% of each background recording only",
        ],
    )
    return SpeechData(dataset, noise)


def read_clip_long(path: Path) -> np.ndarray:
    pcm, _ = sf.read(path, dtype="float32", always_2d=True)
    return pcm.mean(axis=1)
