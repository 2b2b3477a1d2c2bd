"""Evaluate an exported model with ONNX Runtime: accuracy (with a bootstrap interval), the
confusion matrix, and the figures beside the card. Used right after export and by
`python -m training evaluate <task>`."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import Split
from training.tasks.base import Task

CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"


@dataclass
class Evaluation:
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


def evaluate(task: Task, model_path: Path, split: Split, num_classes: int) -> Evaluation:
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


def plot_confusion(confusion: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for i, j in np.ndindex(confusion.shape):
        ax.text(
            j,
            i,
            str(confusion[i, j]),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if confusion[i, j] > confusion.max() / 2 else "black",
        )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: list[dict[str, float]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], label="train (augmented)")
    ax_acc.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
