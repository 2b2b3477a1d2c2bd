"""Calibration: temperature scaling fitted on validation, expected calibration error, and the
abstain threshold the server uses to say "not sure"."""

from __future__ import annotations

import itertools

import numpy as np
import torch

ECE_BINS = 15
ABSTAIN_RULE = (
    "smallest top-probability threshold at which the validation error among the answers kept "
    "is at most half the overall validation error (0 when validation has no error)"
)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the validation NLL of softmax(logits / T)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def uncalibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(z / T) raised to T and renormalised is softmax(z): the pre-calibration
    probabilities, recovered from the exported (calibrated) graph's output."""
    logp = np.log(np.clip(probs.astype(np.float64), 1e-300, None)) * temperature
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def abstain_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    conf = probs.max(axis=1)
    wrong = probs.argmax(axis=1) != labels
    if not wrong.any():
        return 0.0
    target = wrong.mean() / 2
    order = np.argsort(-conf)
    kept_error = np.cumsum(wrong[order]) / np.arange(1, len(order) + 1)
    # keep the largest prefix (highest confidences) whose error is within target
    ok = np.nonzero(kept_error <= target)[0]
    if len(ok) == 0:
        return float(conf.max())
    return float(conf[order][ok[-1]])


def selective_stats(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(coverage, accuracy among answers kept) at a threshold."""
    keep = probs.max(axis=1) >= threshold
    acc = float((probs.argmax(axis=1)[keep] == labels[keep]).mean()) if keep.any() else 1.0
    return float(keep.mean()), acc
