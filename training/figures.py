"""The two figures beside a card, drawn in one place for training and for `evaluate`: the test
confusion matrix and the per-epoch training curves."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from app.card import ModelCard
from training.measure import Evaluation

CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"


def write_figures(model_dir: Path, card: ModelCard, test: Evaluation) -> list[str]:
    """Both figures beside a card: the confusion matrix as just measured on the test split, the
    curves from the card's training history."""
    plot_confusion(
        test.confusion,
        card.labels,
        f"{card.name}: test accuracy {test.accuracy:.2%} on {len(test.labels)} samples "
        f"({card.data.splits['test'].source})",
        model_dir / CONFUSION_PNG,
    )
    plot_curves(
        card.training.history,
        f"{card.name}: best epoch {card.training.best_epoch} on validation",
        model_dir / CURVES_PNG,
    )
    return [CONFUSION_PNG, CURVES_PNG]


def _pyplot() -> Any:
    """matplotlib, imported late: only drawing needs it, and it is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    plt = _pyplot()
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
    plt = _pyplot()
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
