"""`python -m training evaluate <task>`: re-measure a models/ entry with ONNX Runtime and check
every figure on its card against the measurement: the sha256 of the model and of the tokenizer,
the split sizes, every metric (accuracy and its interval, ECE before and after calibration,
abstain coverage, accuracy when answering, validation accuracy, the robustness accuracies of
training/robustness.py, and any other), the calibration's
ECEs and the abstain threshold. Prints the confusion matrix and redraws the figures. Exit status
1 on any disagreement, or when the card has no test metric to check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from app.card import Metric, ModelCard, TextPreprocessing, latest_version_dir, sha256_of
from training import calibrate
from training.card import ROUNDING, card_metrics
from training.data import DataNotFoundError
from training.figures import write_figures
from training.measure import calibration_probabilities, format_confusion, measure
from training.robustness import robustness_metrics
from training.tasks import get_task
from training.tasks.seed import is_baseline

TOLERANCE = 2 * 10.0**-ROUNDING  # the card keeps 6 decimals; the measurement is deterministic


def evaluate_entry(name: str, models_dir: Path, data_dir: Path, download: bool = False) -> int:
    model_dir = latest_version_dir(models_dir, name)
    card = ModelCard.load(model_dir)
    problems = list(file_problems(card, model_dir))
    if problems:  # measuring a file that is not the card's would check nothing
        return report(problems)
    if not any(m.split == "test" for m in card.metrics):
        return report([f"{model_dir / 'card.json'} has no test metric to check"])

    task = get_task(name, "seed" if is_baseline(card) else "default")
    try:
        dataset = task.load_data(data_dir, download, int(card.training.seed))
    except DataNotFoundError as exc:
        raise DataNotFoundError(
            f"evaluate re-measures the validation and test splits of {name}: {exc}"
        ) from exc
    task.restore(model_dir, dataset)
    onnx_path = model_dir / card.onnx_file
    validation = measure(task, onnx_path, dataset.val, len(card.labels))
    test = measure(task, onnx_path, dataset.test, len(card.labels))

    low, high = test.interval_95
    print(
        f"{name} {card.version}: test accuracy {test.accuracy:.4f} (95% {low:.4f}-{high:.4f}) "
        f"on {len(test.labels)} samples"
    )
    print(format_confusion(test.confusion, card.labels))
    written = write_figures(model_dir, card, test)

    measured = card_metrics(
        card.data.dataset,
        validation,
        test,
        card.calibration.temperature,
        card.calibration.abstain_threshold,
    )
    measured += robustness_metrics(
        task, onnx_path, dataset.test, card.data.dataset, len(card.labels)
    )
    if card.ood is not None:  # the out-of-distribution score's figures too
        from training.ood import remeasure

        measured += remeasure(card, model_dir, data_dir)
    sizes = {"train": None, "validation": len(dataset.val), "test": len(dataset.test)}
    problems = [
        *split_problems(card, sizes),
        *metric_problems(card.metrics, measured),
        *calibration_problems(
            card, measured, *calibration_probabilities(task, onnx_path, dataset.val, validation)
        ),
    ]
    if problems:
        return report(problems)
    checked = len(card.metrics) + 3  # the metrics, the two calibration ECEs, the threshold
    print(
        f"matches the card: {checked} figures and the file hashes; "
        f"wrote {' and '.join(written)} in {model_dir}"
    )
    return 0


def report(problems: list[str]) -> int:
    for problem in problems:
        print(f"mismatch: {problem}")
    return 1


def file_problems(card: ModelCard, model_dir: Path) -> Iterator[str]:
    onnx_path = model_dir / card.onnx_file
    if sha256_of(onnx_path) != card.onnx_sha256:
        yield f"{onnx_path} does not match the sha256 on its card"
    prep = card.preprocessing
    if isinstance(prep, TextPreprocessing):
        path = model_dir / prep.tokenizer_file
        if prep.tokenizer_sha256 is None:
            print(f"note: the card records no sha256 for {path}; not checked")
        elif sha256_of(path) != prep.tokenizer_sha256:
            yield f"{path} does not match the tokenizer sha256 on its card"


def split_problems(card: ModelCard, sizes: dict[str, int | None]) -> Iterator[str]:
    for split, size in sizes.items():
        recorded = card.data.splits.get(split)
        if size is not None and recorded is not None and recorded.samples != size:
            yield f"the card's {split} split has {recorded.samples} samples, the data {size}"


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > TOLERANCE


def metric_problems(recorded: list[Metric], measured: list[Metric]) -> Iterator[str]:
    by_key = {(m.name, m.split): m for m in measured}
    for metric in recorded:
        label = f"{metric.split} {metric.name}"
        got = by_key.get((metric.name, metric.split))
        if got is None:
            yield f"the card records {label}, which evaluate cannot re-measure"
            continue
        if _differs(metric.value, got.value):
            yield f"the card records {label} {metric.value:.6f}, measured {got.value:.6f}"
        if metric.samples != got.samples:
            yield f"the card's {label} is on {metric.samples} samples, measured {got.samples}"
        if (metric.interval_95 is None) != (got.interval_95 is None) or (
            metric.interval_95 is not None
            and got.interval_95 is not None
            and any(
                _differs(a, b) for a, b in zip(metric.interval_95, got.interval_95, strict=True)
            )
        ):
            yield (
                f"the card records {label} interval {metric.interval_95}, "
                f"measured {got.interval_95}"
            )


def calibration_problems(
    card: ModelCard, measured: list[Metric], val_probabilities: np.ndarray, val_labels: np.ndarray
) -> Iterator[str]:
    values = {m.name: m.value for m in measured if m.split == "test"}
    cal = card.calibration
    for field, name in (("ece_test_before", "ece_uncalibrated"), ("ece_test_after", "ece")):
        if _differs(getattr(cal, field), values[name]):
            yield (
                f"the card records calibration.{field} {getattr(cal, field):.6f}, "
                f"measured {values[name]:.6f}"
            )
    threshold = round(calibrate.abstain_threshold(val_probabilities, val_labels), ROUNDING)
    if _differs(cal.abstain_threshold, threshold):
        yield (
            f"the card records abstain_threshold {cal.abstain_threshold:.6f}, "
            f"validation gives {threshold:.6f}"
        )
