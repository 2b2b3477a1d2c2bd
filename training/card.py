"""From a finished run to its card: every figure on the card is computed here, from the
ONNX Runtime measurements of the exported file, so the `evaluate` command can recompute the same
figures with the same code (`card_metrics`) and compare them one by one."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from app.card import (
    Calibration,
    DataInfo,
    Metric,
    ModelCard,
    Preprocessing,
    SplitInfo,
    TextPreprocessing,
    TrainingInfo,
    sha256_of,
)
from training import calibrate
from training.data import Dataset
from training.export import OPSET, PARITY_BATCHES, output_spec
from training.loop import TrainResult
from training.measure import Evaluation
from training.tasks.base import Task

MODEL_VERSION = "1.0.0"
ROUNDING = 6  # decimals kept on the card


@dataclass
class RunResult:
    """Everything one training run produced that the card records."""

    task: Task
    dataset: Dataset
    config: dict[str, Any]
    training: TrainResult
    device: torch.device
    onnx_path: Path
    temperature: float
    abstain_threshold: float
    parity: float
    extra_files: list[str]
    validation: Evaluation
    test: Evaluation
    calibration_fitted_on: str = "validation"


def card_metrics(
    dataset_name: str,
    validation: Evaluation,
    test: Evaluation,
    temperature: float,
    abstain_threshold: float,
) -> list[Metric]:
    """The card's metrics from the two measured splits: test accuracy with its interval,
    validation accuracy, test ECE before and after calibration, and the abstain figures."""
    n_test, n_val = len(test.labels), len(validation.labels)
    ece_after = calibrate.expected_calibration_error(test.probabilities, test.labels)
    ece_before = calibrate.expected_calibration_error(
        calibrate.uncalibrate(test.probabilities, temperature), test.labels
    )
    coverage, selective_acc = calibrate.selective_stats(
        test.probabilities, test.labels, abstain_threshold
    )

    def metric(
        name: str, value: float, split: str, n: int, ci: tuple[float, float] | None = None
    ) -> Metric:
        interval = None if ci is None else (round(ci[0], ROUNDING), round(ci[1], ROUNDING))
        return Metric(
            name=name,
            value=round(value, ROUNDING),
            dataset=dataset_name,
            split=split,
            samples=n,
            interval_95=interval,
        )

    return [
        metric("accuracy", test.accuracy, "test", n_test, test.interval_95),
        metric("accuracy", validation.accuracy, "validation", n_val),
        metric("ece_uncalibrated", ece_before, "test", n_test),
        metric("ece", ece_after, "test", n_test),
        metric("abstain_coverage", coverage, "test", n_test),
        metric("accuracy_when_answering", selective_acc, "test", n_test),
    ]


def preprocessing_with_hashes(prep: Preprocessing, model_dir: Path) -> Preprocessing:
    """The task's preprocessing, plus the sha256 of any file it names (the tokenizer)."""
    if isinstance(prep, TextPreprocessing):
        return prep.model_copy(
            update={"tokenizer_sha256": sha256_of(model_dir / prep.tokenizer_file)}
        )
    return prep


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, no GPU"


def build_card(run: RunResult) -> ModelCard:
    task, dataset = run.task, run.dataset
    metrics = card_metrics(
        dataset.name, run.validation, run.test, run.temperature, run.abstain_threshold
    )
    by_name = {m.name: m.value for m in metrics if m.split == "test"}
    notes = list(dataset.notes)
    if run.extra_files:
        notes.append(f"ships with: {', '.join(run.extra_files)}")
    notes.append(
        f"torch vs ONNX Runtime max abs difference {run.parity:.2e} at batch sizes "
        f"{', '.join(map(str, PARITY_BATCHES))}"
    )
    return ModelCard(
        name=task.name,
        version=MODEL_VERSION,
        task=task.card_task,
        description=task.description,
        onnx_sha256=sha256_of(run.onnx_path),
        opset=OPSET,
        inputs=[task.input_spec()],
        outputs=[output_spec(len(dataset.labels))],
        labels=dataset.labels,
        preprocessing=preprocessing_with_hashes(task.preprocessing(), run.onnx_path.parent),
        calibration=Calibration(
            temperature=round(run.temperature, ROUNDING),
            fitted_on=run.calibration_fitted_on,
            ece_test_before=by_name["ece_uncalibrated"],
            ece_test_after=by_name["ece"],
            abstain_threshold=round(run.abstain_threshold, ROUNDING),
            abstain_rule=calibrate.ABSTAIN_RULE,
        ),
        metrics=metrics,
        data=DataInfo(
            dataset=dataset.name,
            citation=dataset.citation,
            notes=notes,
            splits={
                name: SplitInfo(samples=len(split), source=split.source)
                for name, split in (
                    ("train", dataset.train),
                    ("validation", dataset.val),
                    ("test", dataset.test),
                )
            },
        ),
        training=TrainingInfo(
            command=" ".join(["python -m training", *map(shlex.quote, sys.argv[1:])]),
            config=run.config,
            seed=run.config["seed"],
            epochs=run.config["epochs"],
            best_epoch=run.training.best_epoch,
            duration_s=round(run.training.duration_s, 1),
            device=str(run.device),
            machine=machine_description(run.device),
            finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            history=[{k: round(v, 5) for k, v in h.items()} for h in run.training.history],
        ),
        versions={pkg: version(pkg) for pkg in ("torch", "onnx", "onnxruntime", "numpy")},
    )
