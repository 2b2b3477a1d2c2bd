"""Abstain rates and accuracy measured through a running server's API, as a client sees them.

    .venv/bin/python -m app &                       # the committed models on :8000
    .venv/bin/python scripts/honest_answers.py [--url http://localhost:8000] [--data-dir DIR]

Sends what issue 13 names and prints one line per set: blank, uniform and noise images to both
image models; CIFAR-10 test photos to the digit model; MNIST and IMDB test items; gibberish and
foreign text; plain one-liners; the test sets as users send them (digit photos in pen, pencil,
shadow and tilt; CIFAR-10 as JPEG quality 75; speech through 8 kHz) with the answers' accuracy.
Every input is generated with a fixed seed from the shared datasets (needs the training extra:
it reuses training/ood_sets.py and training/robustness.py). Figures go into the notes and the
README; the card's own figures come from `python -m training evaluate`.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training import ood_sets, robustness  # noqa: E402
from training.data import cifar10, imdb, mnist, resolve_data_dir, speech  # noqa: E402

CHUNK = 64


def png(image: Image.Image | np.ndarray) -> bytes:
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(chw: np.ndarray, quality: int) -> bytes:
    image = Image.fromarray(np.rint(chw.transpose(1, 2, 0) * 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def wav(wave: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def answers_for(http: httpx.Client, route: str, items: list, form: dict, kind: str) -> list[dict]:
    out: list[dict] = []
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        if kind == "text":
            reply = http.post(route, json={"texts": chunk, **form})
        else:
            name, mime = ("x.wav", "audio/wav") if kind == "audio" else ("x.png", "image/png")
            files = [("files", (name, item, mime)) for item in chunk]
            reply = http.post(route, files=files, data=form)
        reply.raise_for_status()
        out += reply.json()["predictions"]
    return out


def report(name: str, answers: list[dict], labels: list[str] | None = None) -> None:
    abstain = np.mean([a["abstain"] for a in answers])
    reasons: dict[str, int] = {}
    for a in answers:
        if a["abstain"]:
            reasons[a["reason"]] = reasons.get(a["reason"], 0) + 1
    line = f"{name:48s} n={len(answers):6d}  abstain {abstain * 100:6.2f}%  {reasons}"
    if labels is not None:
        right = [a["label"] == y for a, y in zip(answers, labels, strict=True)]
        kept = [r for r, a in zip(right, answers, strict=True) if not a["abstain"]]
        line += f"  accuracy {np.mean(right) * 100:.2f}%"
        line += f" (answered {np.mean(kept) * 100:.2f}%)" if kept else ""
    print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://localhost:8000")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    data = resolve_data_dir(args.data_dir)
    rng = np.random.default_rng(0)
    http = httpx.Client(base_url=args.url, timeout=300)

    def images(model: str) -> Callable[[str, list, list[str] | None], None]:
        def send(name: str, pictures: list, labels: list[str] | None = None) -> None:
            blobs = [p if isinstance(p, bytes) else png(p) for p in pictures]
            report(
                name, answers_for(http, "/predict/image", blobs, {"model": model}, "image"), labels
            )

        return send

    to_mnist, to_cifar = images("mnist"), images("cifar10")
    synthetic = [
        *ood_sets.blank_images(15, rng),
        *ood_sets.uniform_colour_images(15, rng),
        *ood_sets.uniform_noise_images(15, rng),
        *ood_sets.gaussian_noise_images(15, rng),
    ]
    to_mnist("blank, uniform and noise images -> mnist", synthetic)
    to_cifar("blank, uniform and noise images -> cifar10", synthetic)

    digits = mnist.load(data)
    names = [str(y) for y in digits.test.y]
    test_digits = np.rint(digits.test.x[:, 0] * 255).astype(np.uint8)
    to_mnist("MNIST test digits -> mnist", list(test_digits), names)
    photos = cifar10.load(data)
    cifar_hwc = np.rint(photos.test.x.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    to_mnist("CIFAR-10 test photos -> mnist", list(cifar_hwc))
    every = robustness.DIGIT_PHOTO_EVERY
    for style in robustness.DIGIT_STYLES:
        style_rng = np.random.default_rng([0, robustness.DIGIT_STYLES.index(style)])
        shots = [robustness.digit_photo(d, style, style_rng) for d in test_digits[::every]]
        to_mnist(f"MNIST test digits as {style} photos -> mnist", shots, names[::every])

    cifar_names = [photos.labels[y] for y in photos.test.y]
    to_cifar("CIFAR-10 test images (PNG) -> cifar10", list(cifar_hwc), cifar_names)
    jpegs = [jpeg_bytes(x, 75) for x in photos.test.x]
    to_cifar("CIFAR-10 test images as JPEG q75 -> cifar10", jpegs, cifar_names)
    digits_rgb = [np.repeat(d[..., None], 3, axis=2) for d in test_digits[:400]]
    to_cifar("MNIST digits -> cifar10", digits_rgb)

    def texts(name: str, items: list[str], labels: list[str] | None = None) -> None:
        report(name, answers_for(http, "/predict/sentiment", items, {}, "text"), labels)

    reviews = imdb.load(data)
    sample = np.random.default_rng(0).permutation(len(reviews.test))[:2000]
    texts(
        "IMDB test reviews (2,000)",
        [reviews.test.x[i][:20_000] for i in sample],
        [reviews.labels[reviews.test.y[i]] for i in sample],
    )
    pairs = ood_sets.last_sentence_of_each([reviews.test.x[i] for i in sample])
    texts(
        "their last sentences (5-30 words)",
        [s for _, s in pairs],
        [reviews.labels[reviews.test.y[sample[i]]] for i, _ in pairs],
    )
    texts("gibberish (200)", ood_sets.gibberish_texts(200, np.random.default_rng(1)))
    texts("foreign-language sentences (200)", ood_sets.foreign_texts(200, np.random.default_rng(1)))

    clips = speech.load(data).dataset
    spoken = [clips.labels[y] for y in clips.test.y]
    for name, waves, rate in (
        ("speech test clips -> speech", clips.test.x, 16000),
        ("speech test clips through 8 kHz -> speech", robustness.through_8khz(clips.test.x), 16000),
    ):
        blobs = [wav(w, rate) for w in waves]
        report(name, answers_for(http, "/predict/speech", blobs, {}, "audio"), spoken)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
