"""The corruptions behind the training augmentation and the card's robustness metrics
(training/robustness.py): each does what its name says, is deterministic where the card needs
it, and keeps the graph's input format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training import robustness
from training.data import Split
from training.ood_sets import short_sentences
from training.tasks.imdb import add_short_passages, short_test_split, with_last_sentences
from training.tasks.mnist import MnistTask
from training.tasks.speech import SAMPLE_RATE, SpeechTask


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """Photo-like float CHW images: smooth colour fields with an edge, not noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = np.empty((n, 3, 32, 32), np.float32)
    for i in range(n):
        a, b, c = rng.uniform(0, 1, 3)
        for ch in range(3):
            out[i, ch] = np.clip(a * xx + b * yy + c * (xx > 0.5) * (ch == i % 3), 0, 1) / 1.5
    return out


def test_jpeg_split_changes_pixels_deterministically_and_keeps_the_format() -> None:
    test = Split(smooth_images(6), np.arange(6), "clean")
    first, second = robustness.jpeg_split(test, 75), robustness.jpeg_split(test, 75)
    assert first.x.shape == test.x.shape and first.x.dtype == np.float32
    assert np.array_equal(first.x, second.x)
    change = np.abs(first.x - test.x)
    assert 0 < change.mean() < 0.05  # compressed, not destroyed
    harsher = np.abs(robustness.jpeg_split(test, 30).x - test.x).mean()
    assert harsher > change.mean()
    assert "JPEG quality 75" in first.source


def test_photo_augment_replaces_about_its_share_and_leaves_the_rest() -> None:
    x = smooth_images(200)
    out = robustness.photo_augment(x, np.random.default_rng(1), p=0.4)
    changed = np.abs(out - x).reshape(len(x), -1).max(axis=1) > 1 / 255
    assert 0.25 < changed.mean() < 0.55
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out[~changed], x[~changed])
    assert np.abs(robustness.photo_augment(x, np.random.default_rng(1), p=0.0) - x).max() == 0


def mnist_like_digits(n: int) -> np.ndarray:
    """A thick white ring (a "0") on black, at MNIST's 20-px box, as float [0, 1]."""
    yy, xx = np.mgrid[0:28, 0:28]
    radius = np.hypot(yy - 14, xx - 14)
    ring = ((radius > 5) & (radius < 9)).astype(np.float32)
    return np.repeat(ring[None, None], n, axis=0)


@pytest.mark.parametrize("style", robustness.DIGIT_STYLES)
def test_digit_photos_are_dark_ink_on_paper_and_come_back_as_mnist(style: str) -> None:
    digits = mnist_like_digits(11)  # every 5th is photographed: 3 of them
    photo = robustness.digit_photo(
        np.rint(digits[0, 0] * 255).astype(np.uint8), style, np.random.default_rng(0)
    )
    pixels = np.asarray(photo)
    assert photo.mode == "L" and photo.size == (robustness.PAGE, robustness.PAGE)
    assert np.median(pixels) > 150  # light paper
    assert pixels.min() < np.median(pixels) - 60  # darker ink
    split = robustness.digit_photo_split(Split(digits, np.zeros(11, np.int64), "rings"), style)
    assert split.x.shape == (3, 1, 28, 28) and split.x.dtype == np.float32
    assert np.array_equal(
        split.x, robustness.digit_photo_split(Split(digits, split.y, ""), style).x
    )
    ink = split.x[0, 0] > 0.5
    assert ink.any() and not ink[14, 14]  # a ring again: ink around a hole, white on black
    assert split.x[0, 0, :3].max() < 0.2  # the border is background


def test_through_8khz_removes_what_a_phone_line_cannot_carry() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, high = np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 6000 * t)
    waves = np.stack([low, high, low + high]).astype(np.float32) * 0.3
    out = robustness.through_8khz(waves)
    assert out.shape == waves.shape and out.dtype == np.float32
    middle = slice(1000, -1000)
    assert np.abs(out[0, middle] - waves[0, middle]).max() < 0.02  # 1 kHz passes
    assert np.abs(out[1, middle]).max() < 0.01  # 6 kHz is gone
    assert np.abs(out[2, middle] - waves[0, middle]).max() < 0.02


def test_reverb_keeps_length_and_peak_and_smears_in_time() -> None:
    wave = np.zeros((1, SAMPLE_RATE), np.float32)
    wave[0, 1000] = 0.5
    impulse = robustness.room_impulse(np.random.default_rng(0), 0.4)
    assert len(impulse) == int(0.4 * SAMPLE_RATE) and impulse[0] == 1.0
    wet = robustness.reverberate(wave, [impulse])
    assert wet.shape == wave.shape
    assert np.isclose(np.abs(wet).max(), 0.5, atol=1e-4)
    tail = np.abs(wet[0, 1100 : 1000 + int(0.3 * SAMPLE_RATE)])
    assert (tail > 1e-4).mean() > 0.5  # the click rings on in the room
    test = Split(np.repeat(wave, 3, axis=0), np.zeros(3, np.int64), "clicks")
    assert np.array_equal(robustness.reverb_split(test).x, robustness.reverb_split(test).x)


def test_speech_equaliser_band_limits_a_phone_share_only() -> None:
    task = SpeechTask()
    task.config = {**task.defaults, "mic_p": 0.0, "phone_p": 1.0}
    task.rng = np.random.default_rng(0)
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    wave = (torch.sin(2 * torch.pi * 1000 * t) + torch.sin(2 * torch.pi * 6000 * t))[None] * 0.3
    out = task._equalise(wave.repeat(4, 1))
    spectrum = torch.fft.rfft(out, dim=1).abs()
    assert (spectrum[:, 6000] < 0.01 * spectrum[:, 1000]).all()  # 6 kHz cut, 1 kHz kept
    task.config["phone_p"] = 0.0
    assert torch.equal(task._equalise(wave), wave)


def test_digit_augmentation_changes_stroke_width_and_keeps_the_range() -> None:
    task = MnistTask()
    task.config = {**task.defaults, "pen_p": 1.0, "pencil_p": 0.0, "shadow_p": 0.0}
    torch.manual_seed(0)
    x = torch.from_numpy(mnist_like_digits(64))
    out = task._pens(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    ink_before = (x > 0.5).float().sum(dim=(1, 2, 3))
    ink_after = (out > 0.5).float().sum(dim=(1, 2, 3))
    assert (ink_after > ink_before * 1.1).any() and (ink_after < ink_before * 0.9).any()


REVIEWS = [
    "A slow start. But the second half is a wonderful, moving piece of cinema that I loved.",
    "Terrible. I want those two hours back, the worst film I have seen this whole year.",
    "Fine",
]


def test_short_test_split_takes_each_reviews_last_sentence_with_its_label() -> None:
    split = short_test_split(Split(REVIEWS, np.array([1, 0, 1]), "reviews"))
    assert split.x == [
        "But the second half is a wonderful, moving piece of cinema that I loved.",
        "I want those two hours back, the worst film I have seen this whole year.",
    ]
    assert split.y.tolist() == [1, 0]  # "Fine" has no sentence of 5-30 words


def test_calibration_split_is_validation_then_its_last_sentences() -> None:
    split = with_last_sentences(Split(REVIEWS, np.array([1, 0, 1]), "val"))
    assert split.x[:3] == REVIEWS and len(split.x) == 5
    assert split.y.tolist() == [1, 0, 1, 1, 0]


def test_short_passages_are_added_with_their_reviews_labels() -> None:
    train = Split(list(REVIEWS * 20), np.array([1, 0, 1] * 20), "train")
    add_short_passages(train, 1.0, [5, 30], seed=0)
    added = train.x[60:]
    assert len(added) > 10 and len(train.y) == len(train.x)
    for text, label in zip(added, train.y[60:], strict=True):
        assert 5 <= len(text.split()) <= 30
        source = next(i for i, r in enumerate(REVIEWS) if text in r)
        assert label == [1, 0, 1][source]
    assert "short passages" in train.source


def test_short_sentences_skip_initials() -> None:
    text = "Mr. Smith was awful. Awful! S. K. The end was fun and it is a fine film."
    assert short_sentences([text]) == ["Smith was awful.", "Awful!"]
