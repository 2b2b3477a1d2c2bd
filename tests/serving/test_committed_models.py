"""The committed models in models/ (mnist, cifar10, imdb, speech), served as shipped: they must
load and validate, and answer real test data about as well as their cards say. Each test skips
cleanly when its model (or the shared test data) is not there."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from data_skips import data_dir, needs_data
from model_factory import image_bytes
from PIL import Image
from serving_harness import COMMITTED_MODELS, running_server, settings_for

from app.card import ModelCard

NAMES = ("mnist", "cifar10", "imdb", "speech")
PRESENT = [n for n in NAMES if (COMMITTED_MODELS / n).is_dir()]
DATA_DIR = data_dir()

pytestmark = pytest.mark.skipif(not PRESENT, reason="no committed models in models/ yet")


def needs(name: str) -> None:
    if name not in PRESENT:
        pytest.skip(f"models/{name} is not committed yet")


@pytest.fixture(scope="module")
def committed() -> Iterator[httpx.Client]:
    settings = settings_for(COMMITTED_MODELS, max_batch_size=32, max_items=128)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def test_committed_models_are_ready_and_documented(committed: httpx.Client) -> None:
    ready = committed.get("/readyz").json()
    assert ready["ready"], ready["problems"]
    for name in PRESENT:
        detail = committed.get(f"/models/{name}").json()
        card = ModelCard.model_validate(detail["card"])
        assert card.metric("accuracy") is not None, f"{name}: no test accuracy on the card"
        assert 0 < card.calibration.abstain_threshold < 1
        assert detail["status"] == "ready" and detail["runtime"][detail["version"]]


def _accuracy(predictions: list[dict], labels: list[str]) -> float:
    return float(
        np.mean([p["label"] == label for p, label in zip(predictions, labels, strict=True)])
    )


def _floor(client: httpx.Client, name: str, samples: int) -> float:
    """The accuracy a sample of this size must reach if the server prepares inputs as training
    did: the card's test accuracy less three binomial standard errors (and 2 points of slack
    for the sample not being the card's test split)."""
    card = ModelCard.model_validate(client.get(f"/models/{name}").json()["card"])
    metric = card.metric("accuracy")
    assert metric is not None, f"{name}: the card reports no test accuracy"
    accuracy = metric.value
    return accuracy - 3 * float(np.sqrt(accuracy * (1 - accuracy) / samples)) - 0.02


@pytest.mark.data
def test_mnist_reads_test_digits_and_photos_of_them(committed: httpx.Client) -> None:
    needs("mnist")
    images = needs_data(DATA_DIR / "mnist" / "t10k-images-idx3-ubyte.gz")
    raw_labels = gzip.decompress((DATA_DIR / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    digits = np.frombuffer(gzip.decompress(images.read_bytes())[16:], np.uint8)
    digits = digits.reshape(-1, 28, 28)[:100]
    labels = [str(v) for v in raw_labels[8 : 8 + 100]]

    def ask(pictures: list[bytes]) -> list[dict]:
        files = [("files", (f"{i}.png", p, "image/png")) for i, p in enumerate(pictures)]
        response = committed.post("/predict/image", files=files, data={"model": "mnist"})
        assert response.status_code == 200, response.text
        return response.json()["predictions"]

    floor = _floor(committed, "mnist", len(labels))
    as_is = ask([image_bytes(d) for d in digits])
    assert _accuracy(as_is, labels) >= floor
    # The same digits as a phone might see them: dark ink on light paper, 4× larger, margin.
    photos = []
    for digit in digits:
        page = np.full((160, 140), 235, np.uint8)
        page[20:132, 14:126] = 235 - np.kron(digit, np.ones((4, 4), np.uint8)) * 0.85
        photos.append(image_bytes(page, "JPEG", quality=90))
    assert _accuracy(ask(photos), labels) >= floor - 0.05


@pytest.mark.data
def test_cifar10_classifies_test_images(committed: httpx.Client) -> None:
    needs("cifar10")
    grid = needs_data(DATA_DIR / "cifar10" / "test_00.webp")
    classes = (DATA_DIR / "cifar10" / "classes.txt").read_text().split()
    truth = (DATA_DIR / "cifar10" / "test_labels.txt").read_text().split()[:100]
    pixels = np.asarray(Image.open(grid).convert("RGB"))
    tiles = pixels.reshape(25, 32, 40, 32, 3).transpose(0, 2, 1, 3, 4).reshape(1000, 32, 32, 3)
    files = [("files", (f"{i}.png", image_bytes(tiles[i]), "image/png")) for i in range(100)]
    response = committed.post("/predict/image", files=files, data={"model": "cifar10"})
    assert response.status_code == 200, response.text
    labels = [classes[int(t)] for t in truth]
    assert _accuracy(response.json()["predictions"], labels) >= _floor(committed, "cifar10", 100)


@pytest.mark.data
def test_imdb_reads_test_reviews(committed: httpx.Client) -> None:
    needs("imdb")
    path = needs_data(DATA_DIR / "imdb" / "test.jsonl.gz")
    reviews = []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            reviews.append(json.loads(line))
            if len(reviews) == 2000:
                break
    rng = np.random.default_rng(0)
    sample = [reviews[i] for i in rng.choice(len(reviews), 60, replace=False)]
    texts = [r["text"][:5000] for r in sample]
    response = committed.post("/predict/sentiment", json={"texts": texts, "model": "imdb"})
    assert response.status_code == 200, response.text
    labels = ["positive" if r["label"] == 1 else "negative" for r in sample]
    assert _accuracy(response.json()["predictions"], labels) >= _floor(committed, "imdb", 60)


@pytest.mark.data
def test_speech_recognises_keywords(committed: httpx.Client) -> None:
    needs("speech")
    root = needs_data(DATA_DIR / "speech_commands")
    files, labels = [], []
    for word in ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"):
        for clip in sorted((root / word).glob("*.flac"))[-4:]:
            files.append(("files", (clip.name, clip.read_bytes(), "audio/flac")))
            labels.append(word)
    response = committed.post("/predict/speech", files=files, data={"model": "speech"})
    assert response.status_code == 200, response.text
    assert _accuracy(response.json()["predictions"], labels) >= _floor(committed, "speech", 40)


def test_speech_takes_a_plain_wav_too(committed: httpx.Client) -> None:
    needs("speech")
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(8000, np.float32), 8000, format="WAV")
    response = committed.post(
        "/predict/speech", files={"files": ("quiet.wav", buffer.getvalue(), "audio/wav")}
    )
    assert response.status_code == 200, response.text
    card = ModelCard.model_validate(committed.get("/models/speech").json()["card"])
    assert response.json()["predictions"][0]["label"] in card.labels


def test_each_committed_model_serves_the_precision_its_card_earns(
    committed: httpx.Client,
) -> None:
    """int8 where the card shows it loses at most 0.2 pp of test accuracy, fp32 otherwise."""
    for name in PRESENT:
        detail = committed.get(f"/models/{name}").json()
        card = ModelCard.model_validate(detail["card"])
        runtime = detail["runtime"][detail["version"]]
        expected_file, _ = card.serving_onnx("auto")
        assert runtime["onnx_file"] == expected_file, name
        loss = card.int8_loss()
        expected = "int8" if loss is not None and loss <= 0.002 + 1e-9 else "fp32"
        assert runtime["precision"] == expected, (name, loss)
