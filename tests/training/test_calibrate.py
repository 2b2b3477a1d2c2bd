from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from training import calibrate


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sample_calibrated(
    n: int, classes: int, true_t: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / true_t): T = true_t is exact."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, classes))
    p = softmax(logits / true_t)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return logits, labels


def test_temperature_is_recovered_and_lowers_ece() -> None:
    logits, labels = sample_calibrated(6000, 5, true_t=2.0, seed=0)
    t = calibrate.fit_temperature(logits, labels)
    assert 1.8 < t < 2.2
    before = calibrate.expected_calibration_error(softmax(logits), labels)
    after = calibrate.expected_calibration_error(softmax(logits / t), labels)
    assert after < before / 3
    assert after < 0.02


@settings(max_examples=30, deadline=None)
@given(st.floats(0.2, 5.0), st.integers(0, 10_000))
def test_uncalibrate_inverts_the_folded_temperature(t: float, seed: int) -> None:
    logits = np.random.default_rng(seed).normal(0, 2, (20, 4))
    np.testing.assert_allclose(
        calibrate.uncalibrate(softmax(logits / t), t), softmax(logits), atol=1e-9
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000))
def test_abstain_threshold_halves_the_error_of_the_answers_kept(seed: int) -> None:
    logits, labels = sample_calibrated(400, 3, 1.0, seed)
    probs = softmax(logits)
    threshold = calibrate.abstain_threshold(probs, labels)
    overall_error = (probs.argmax(1) != labels).mean()
    coverage, kept_accuracy = calibrate.selective_stats(probs, labels, threshold)
    assert 0 < coverage <= 1
    assert 1 - kept_accuracy <= overall_error / 2 + 1e-12


def test_no_validation_error_means_no_abstaining() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert calibrate.abstain_threshold(probs, np.array([0, 1])) == 0.0
