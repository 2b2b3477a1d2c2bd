"""Measure an exported model with ONNX Runtime on one split: its probabilities, accuracy with a
bootstrap interval, and the confusion matrix. Used right after export (training/pipeline.py) and
by the `evaluate` command (training/evaluate.py); the figures are drawn in training/figures.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import Split
from training.tasks.base import Task


@dataclass
class Evaluation:
    """One split through the exported graph; the probabilities are the calibrated ones."""

    probabilities: np.ndarray
    labels: np.ndarray
    accuracy: float
    interval_95: tuple[float, float]
    confusion: np.ndarray


def ort_probabilities(
    task: Task, model_path: Path, split: Split, batch_size: int = 256
) -> np.ndarray:
    from training.export import cpu_session

    session = cpu_session(model_path)
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: x})[0]
        for x, _ in task.batches(split, batch_size, shuffle=False, rng=np.random.default_rng(0))
    ]
    return np.concatenate(out)


def bootstrap_interval(
    correct: np.ndarray, groups: np.ndarray | None, rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of accuracy, resampling whole groups (speakers) when given."""
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(len(correct))
    names, inverse = np.unique(groups, return_inverse=True)
    hits = np.bincount(inverse, weights=correct.astype(float))
    counts = np.bincount(inverse)
    draws = rng.integers(0, len(names), size=(rounds, len(names)))
    accs = hits[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return float(np.percentile(accs, 2.5)), float(np.percentile(accs, 97.5))


def measure(task: Task, model_path: Path, split: Split, num_classes: int) -> Evaluation:
    probs = ort_probabilities(task, model_path, split)
    pred = probs.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (split.y, pred), 1)
    correct = pred == split.y
    return Evaluation(
        probs, split.y, float(correct.mean()), bootstrap_interval(correct, split.groups), confusion
    )


def format_confusion(confusion: np.ndarray, labels: list[str]) -> str:
    width = max(6, *(len(label) for label in labels))
    head = " " * width + " " + " ".join(f"{label[:width]:>{width}}" for label in labels)
    rows = [
        f"{label[:width]:>{width}} " + " ".join(f"{v:>{width}d}" for v in row)
        for label, row in zip(labels, confusion, strict=True)
    ]
    return "\n".join(
        [f"rows: true label, columns: predicted ({confusion.sum()} samples)", head, *rows]
    )


def calibration_probabilities(
    task: Task, model_path: Path, val: Split, validation: Evaluation
) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities and labels the abstain threshold is fitted on (`Task.calibration_split`):
    the validation measurement itself, or the task's larger split measured here."""
    split = task.calibration_split(val)
    if split is val:
        return validation.probabilities, val.y
    return measure(task, model_path, split, validation.confusion.shape[0]).probabilities, split.y
