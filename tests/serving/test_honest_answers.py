"""Honest answers through the real API on the committed models: inputs unlike anything a model
knows abstain with a reason (blank, uniform and noise images; gibberish and foreign text), test
items of the real data are answered, and `abstain=false` turns abstaining off."""

from __future__ import annotations

import gzip
import json
import string
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from data_skips import data_dir, needs_data
from model_factory import image_bytes
from serving_harness import COMMITTED_MODELS, running_server, settings_for

from app.card import ModelCard, latest_version_dir

DATA_DIR = data_dir()


def committed_card(name: str) -> ModelCard:
    return ModelCard.load(latest_version_dir(COMMITTED_MODELS, name))


pytestmark = pytest.mark.skipif(
    committed_card("mnist").ood is None, reason="the committed models carry no OOD score yet"
)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    settings = settings_for(COMMITTED_MODELS, max_batch_size=32, max_items=128)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def ask_images(http: httpx.Client, pictures: list[bytes], **form: str) -> list[dict]:
    files = [("files", (f"{i}.png", p, "image/png")) for i, p in enumerate(pictures)]
    answer = http.post("/predict/image", files=files, data={"model": "mnist", **form})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def ask_texts(http: httpx.Client, texts: list[str], **body: object) -> list[dict]:
    answer = http.post("/predict/sentiment", json={"texts": texts, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def not_sure_pictures(rng: np.random.Generator) -> list[bytes]:
    """Blank pages, uniform colours (grey levels and RGB) and noise: nothing is a digit."""
    pictures = [image_bytes(np.full((28, 28), v, np.uint8)) for v in (0, 40, 128, 200, 255)]
    pictures += [
        image_bytes(np.full((60, 80, 3), c, np.uint8)) for c in rng.integers(0, 256, (10, 3))
    ]
    pictures += [image_bytes(rng.integers(0, 256, (28, 28), np.uint8)) for _ in range(10)]
    pictures += [image_bytes(rng.integers(0, 256, (64, 64, 3), np.uint8)) for _ in range(10)]
    noise = rng.normal(128, 40, (10, 48, 48)).clip(0, 255).astype(np.uint8)
    pictures += [image_bytes(n) for n in noise]
    return pictures


def test_blank_uniform_and_noise_images_all_abstain_with_a_reason(http: httpx.Client) -> None:
    answers = ask_images(http, not_sure_pictures(np.random.default_rng(0)))
    assert all(a["abstain"] for a in answers), [a["probability"] for a in answers]
    assert {a["reason"] for a in answers} <= {"no_content", "out_of_distribution"}
    for a in answers:  # the label and probability stay, for whoever wants them
        assert a["label"] in "0123456789" and 0 <= a["probability"] <= 1


def test_abstain_false_gives_the_bare_answer(http: httpx.Client) -> None:
    answers = ask_images(http, [image_bytes(np.full((28, 28), 255, np.uint8))], abstain="false")
    assert answers[0]["abstain"] is False and answers[0]["reason"] is None
    texts = ask_texts(http, ["xq zvrt plmok wqa"], abstain=False)
    assert texts[0]["abstain"] is False and texts[0]["reason"] is None
    refused = http.post(
        "/predict/image",
        data={"model": "mnist", "abstain": "maybe"},
        files={"files": ("a.png", image_bytes(np.zeros((28, 28), np.uint8)), "image/png")},
    )
    assert refused.status_code == 422 and "abstain" in refused.json()["error"]["message"]


def gibberish(rng: np.random.Generator, count: int) -> list[str]:
    letters = np.array(list(string.ascii_lowercase))
    return [
        " ".join(
            "".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(rng.integers(6, 20))
        )
        for _ in range(count)
    ]


FOREIGN = [
    "Der Film war viel zu lang und die Schauspieler haben mich nicht überzeugt.",
    "Ich habe mich die ganze Zeit gelangweilt, leider keine Empfehlung.",
    "La película es preciosa, con una fotografía increíble y una música maravillosa.",
    "No me gustó nada, el guion es flojo y los personajes no tienen alma.",
    "Ce film est une merveille, je l'ai regardé deux fois avec mes enfants.",
    "Quelle déception, l'histoire est confuse et beaucoup trop lente.",
    "Il film è bellissimo, gli attori sono bravissimi e la storia commovente.",
    "Che noia, non succede niente per due ore e il finale è ridicolo.",
    "Dit was een prachtige film met een sterke hoofdrolspeler.",
    "O filme é lindo e emocionante, recomendo a todos os meus amigos.",
]


def test_gibberish_and_foreign_text_abstain(http: httpx.Client) -> None:
    texts = gibberish(np.random.default_rng(1), 40) + FOREIGN
    answers = ask_texts(http, texts)
    rate = np.mean([a["abstain"] for a in answers])
    assert rate >= 0.8, [(t, a["probability"]) for t, a in zip(texts, answers, strict=True)]
    assert all(a["reason"] for a in answers if a["abstain"])


# Plainly positive / negative one-liners, as users type them. A lone positive adjective
# ("Wonderful.") is weak evidence to this model, because IMDB's negative reviews use those words
# too ("not wonderful"), so it is not in this list: it answers with its label but abstains for
# low confidence (test below), and the issue 13 note reports it.
POSITIVE_ONE_LINERS = [
    "I loved it.",
    "Loved it!",
    "A moving, beautifully acted film.",
    "Great film!",
    "Brilliant, I loved every minute.",
    "One of the best movies of the year.",
    "A must see, highly recommended.",
]
NEGATIVE_ONE_LINERS = [
    "Awful.",
    "Terrible movie.",
    "Awful acting.",
    "Boring and way too long.",
    "What a waste of time.",
    "The worst film I have ever seen.",
    "Terrible acting and a boring plot.",
    "Not worth watching.",
]


def test_plain_one_liners_are_answered_with_the_right_label(http: httpx.Client) -> None:
    texts = POSITIVE_ONE_LINERS + NEGATIVE_ONE_LINERS
    answers = ask_texts(http, texts)
    expected = ["positive"] * len(POSITIVE_ONE_LINERS) + ["negative"] * len(NEGATIVE_ONE_LINERS)
    got = [
        (t, a["label"], a["probability"], a["reason"]) for t, a in zip(texts, answers, strict=True)
    ]
    assert [a["label"] for a in answers] == expected, got
    assert not [g for g, a in zip(got, answers, strict=True) if a["abstain"]], got


def test_a_lone_adjective_keeps_its_label_when_not_sure(http: httpx.Client) -> None:
    (answer,) = ask_texts(http, ["Wonderful."])
    assert answer["label"] == "positive"
    if answer["abstain"]:
        assert answer["reason"] == "low_confidence"


@pytest.mark.data
def test_mnist_test_digits_are_answered(http: httpx.Client) -> None:
    images = needs_data(DATA_DIR / "mnist" / "t10k-images-idx3-ubyte.gz")
    digits = np.frombuffer(gzip.decompress(images.read_bytes())[16:], np.uint8)
    digits = digits.reshape(-1, 28, 28)[::20]  # 500 of the 10,000
    answers = []
    for start in range(0, len(digits), 100):
        answers += ask_images(http, [image_bytes(d) for d in digits[start : start + 100]])
    rate = np.mean([a["abstain"] for a in answers])
    assert rate <= 0.02, rate
    assert not [a for a in answers if a["reason"] == "no_content"]


@pytest.mark.data
def test_imdb_test_reviews_are_answered(http: httpx.Client) -> None:
    path = needs_data(DATA_DIR / "imdb" / "test.jsonl.gz")
    texts = []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            texts.append(json.loads(line)["text"][:5000])
            if len(texts) == 300:
                break
    answers = []
    for start in range(0, len(texts), 100):
        answers += ask_texts(http, texts[start : start + 100])
    ood = np.mean([a["reason"] == "out_of_distribution" for a in answers])
    assert ood <= 0.02, ood


@pytest.mark.data
def test_cifar10_photos_sent_to_the_digit_model_abstain(http: httpx.Client) -> None:
    from PIL import Image

    grid = needs_data(DATA_DIR / "cifar10" / "test_00.webp")
    pixels = np.asarray(Image.open(grid).convert("RGB"))
    tiles = pixels.reshape(25, 32, 40, 32, 3).transpose(0, 2, 1, 3, 4).reshape(1000, 32, 32, 3)
    answers = []
    for start in range(0, 400, 100):
        answers += ask_images(http, [image_bytes(t) for t in tiles[start : start + 100]])
    rate = np.mean([a["abstain"] for a in answers])
    assert rate >= 0.9, rate
