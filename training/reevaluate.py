"""`python -m training evaluate <task>`: re-measure a models/ entry with ONNX Runtime on its test
split, print accuracy and the confusion matrix, redraw the figures, and compare with the card."""

from __future__ import annotations

from pathlib import Path

from app.card import ModelCard, sha256_of
from training import calibrate
from training.evaluate import (
    CONFUSION_PNG,
    CURVES_PNG,
    evaluate,
    format_confusion,
    plot_confusion,
    plot_curves,
)
from training.tasks.base import Task


def reevaluate(task: Task, models_dir: Path, data_dir: Path, download: bool = False) -> int:
    model_dir = models_dir / task.name
    card = ModelCard.load(model_dir)
    onnx_path = model_dir / card.onnx_file
    if sha256_of(onnx_path) != card.onnx_sha256:
        print(f"error: {onnx_path} does not match the sha256 on its card")
        return 1
    dataset = task.load_data(data_dir, download, int(card.training.seed))
    task.restore(model_dir, dataset)
    result = evaluate(task, onnx_path, dataset.test, len(card.labels))
    ece = calibrate.expected_calibration_error(result.probabilities, result.labels)
    low, high = result.interval_95
    print(
        f"{task.name} {card.version}: test accuracy {result.accuracy:.4f} "
        f"(95% {low:.4f}-{high:.4f}) on {len(dataset.test)} samples; ECE {ece:.4f}"
    )
    print(format_confusion(result.confusion, card.labels))
    plot_confusion(
        result.confusion,
        card.labels,
        f"{task.name}: test accuracy {result.accuracy:.2%} on {len(dataset.test)} samples "
        f"({dataset.test.source})",
        model_dir / CONFUSION_PNG,
    )
    plot_curves(
        card.training.history,
        f"{task.name}: best epoch {card.training.best_epoch} on validation",
        model_dir / CURVES_PNG,
    )
    recorded = card.metric("accuracy", "test")
    if recorded is not None and abs(recorded.value - result.accuracy) > 1e-6:
        print(f"warning: the card records test accuracy {recorded.value:.4f}")
        return 1
    print(f"matches the card; wrote {CONFUSION_PNG} and {CURVES_PNG} in {model_dir}")
    return 0
