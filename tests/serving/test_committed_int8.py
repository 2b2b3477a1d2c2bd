"""The int8 models committed beside model.onnx (`python -m training quantize <task>`): each card's
int8 entry names a file with that sha256, and on real test items that file answers what fp32
answers, within the parity the card reports. Skips a model without an int8 entry, and the
inputs whose test data is not there."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from serving_harness import COMMITTED_MODELS, REPO_ROOT

from app.card import ModelCard, TextPreprocessing, sha256_of
from app.tokenizer import Tokenizer

DATA_DIR = Path(os.environ.get("SMS_DATA_DIR", REPO_ROOT.parent / "shared" / "datasets"))
ITEMS = 48
# Batch composition may move fp32 results in the last bits; int8 scales are static.
SLACK = 1e-3


def with_int8() -> list[tuple[Path, ModelCard]]:
    """(folder, card) of every committed card with an int8 entry, in models/<name>/ or
    models/<name>/<version>/."""
    paths = [*COMMITTED_MODELS.glob("*/card.json"), *COMMITTED_MODELS.glob("*/*/card.json")]
    found = [(p.parent, ModelCard.load(p.parent)) for p in sorted(paths)]
    return [(folder, card) for folder, card in found if card.int8 is not None]


def ids(entry: tuple[Path, ModelCard]) -> str:
    return str(entry[0].relative_to(COMMITTED_MODELS))


WITH_INT8 = with_int8()
pytestmark = pytest.mark.skipif(not WITH_INT8, reason="no committed card has an int8 entry")


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not available: {path}")
    return path


def mnist_items(card: ModelCard, model_dir: Path) -> np.ndarray:
    with gzip.open(needs(DATA_DIR / "mnist" / "t10k-images-idx3-ubyte.gz"), "rb") as f:
        f.read(16)
        pixels = np.frombuffer(f.read(ITEMS * 28 * 28), np.uint8)
    return (pixels.reshape(ITEMS, 1, 28, 28) / 255.0).astype(np.float32)


def cifar10_items(card: ModelCard, model_dir: Path) -> np.ndarray:
    grid = np.asarray(Image.open(needs(DATA_DIR / "cifar10" / "test_00.webp")).convert("RGB"))
    tiles = grid.reshape(25, 32, 40, 32, 3).transpose(0, 2, 1, 3, 4).reshape(1000, 32, 32, 3)
    return (tiles[:ITEMS].transpose(0, 3, 1, 2) / 255.0).astype(np.float32)


def imdb_items(card: ModelCard, model_dir: Path) -> np.ndarray:
    assert isinstance(card.preprocessing, TextPreprocessing)
    tokenizer = Tokenizer.load(model_dir / card.preprocessing.tokenizer_file)
    with gzip.open(needs(DATA_DIR / "imdb" / "test.jsonl.gz"), "rt", encoding="utf-8") as f:
        texts = [json.loads(next(f))["text"] for _ in range(ITEMS)]
    ids = [tokenizer.encode(t) for t in texts]
    batch = np.full((len(ids), max(len(i) for i in ids)), card.preprocessing.pad_id, np.int64)
    for row, item in zip(batch, ids, strict=True):
        row[: len(item)] = item
    return batch


def speaker_bucket(speaker: str) -> int:
    return int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 100


def speech_items(card: ModelCard, model_dir: Path) -> np.ndarray:
    """Clips of test-split speakers (sha1(speaker) mod 100 >= 90, the training rule)."""
    import soundfile

    root = needs(DATA_DIR / "speech_commands")
    clips = []
    for word in ("yes", "no", "up", "down", "left", "right", "stop", "go", "house", "zero"):
        paths = sorted((root / word).glob("*.*"))
        test = [p for p in paths if speaker_bucket(p.stem.split("_nohash_")[0]) >= 90]
        for path in test[:5]:
            pcm, _ = soundfile.read(path, dtype="float32", always_2d=True)
            pcm = pcm.mean(axis=1)[:16000]
            clips.append(np.pad(pcm, (0, 16000 - len(pcm))))
    return np.stack(clips).astype(np.float32)


READERS: dict[str, Callable[[ModelCard, Path], np.ndarray]] = {
    "mnist": mnist_items,
    "cifar10": cifar10_items,
    "imdb": imdb_items,
    "speech": speech_items,
}


def run(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("entry", WITH_INT8, ids=ids)
def test_int8_file_matches_its_card(entry: tuple[Path, ModelCard]) -> None:
    model_dir, card = entry
    assert card.int8 is not None
    path = model_dir / card.int8.onnx_file
    assert sha256_of(path) == card.int8.onnx_sha256
    assert path.stat().st_size == card.int8.size_bytes
    assert sha256_of(model_dir / card.onnx_file) == card.onnx_sha256  # fp32 untouched
    assert card.int8.metric("accuracy") is not None and card.int8.metric("ece") is not None


@pytest.mark.parametrize("entry", WITH_INT8, ids=ids)
def test_int8_answers_like_fp32_on_test_items(entry: tuple[Path, ModelCard]) -> None:
    model_dir, card = entry
    assert card.int8 is not None
    if card.name not in READERS:
        pytest.skip(f"no test-item reader for {card.name}")
    x = READERS[card.name](card, model_dir)
    fp32 = run(model_dir / card.onnx_file, x)
    int8 = run(model_dir / card.int8.onnx_file, x)
    assert int8.shape == fp32.shape == (len(x), len(card.labels))
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-4)  # softmax stayed fp32
    worst = float(np.abs(int8 - fp32).max())
    assert worst <= card.int8.parity.max_abs_probability_difference + SLACK
    agreement = float((int8.argmax(axis=1) == fp32.argmax(axis=1)).mean())
    assert agreement >= min(card.int8.parity.top1_agreement, 1 - 2 / len(x))
