"""One task end to end: data → train (best epoch on validation) → temperature on validation →
export with the temperature folded in → checks and parity → ONNX Runtime evaluation on the
test split → models/<task>/ with model.onnx, card.json, figures."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.card import Calibration, DataInfo, Metric, ModelCard, SplitInfo, TrainingInfo, sha256_of
from training import calibrate
from training.data import Dataset
from training.evaluate import (
    CONFUSION_PNG,
    CURVES_PNG,
    evaluate,
    format_confusion,
    plot_confusion,
    plot_curves,
)
from training.export import (
    OPSET,
    PARITY_BATCHES,
    PARITY_TOLERANCE,
    Calibrated,
    export_onnx,
    output_spec,
    parity,
)
from training.loop import predict_logits, train
from training.tasks.base import Task

MODEL_FILE = "model.onnx"
MODEL_VERSION = "1.0.0"


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, no GPU"


def run_task(
    task: Task,
    data_dir: Path,
    out_root: Path,
    device_name: str = "auto",
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    download: bool = False,
    limit: int | None = None,
    progress: bool = True,
    checkpoint_dir: Path = Path("runs"),
) -> ModelCard:
    config = {**task.defaults, **(overrides or {})}
    device = pick_device(device_name)
    torch.manual_seed(config["seed"])
    np.random.seed(config["seed"])
    dataset = task.load_data(data_dir, download, config["seed"])
    if limit:
        dataset = dataset.subset(limit, config["seed"])
    task.prepare(dataset, config)
    model = task.build_model(config)
    print(
        f"{task.name}: {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"train {len(dataset.train)}, validation {len(dataset.val)}, test {len(dataset.test)}; "
        f"device {device}",
        flush=True,
    )

    checkpoint = None if limit else checkpoint_dir / task.name / "checkpoint.pt"
    result = train(
        task, model, dataset.train, dataset.val, config, device, checkpoint, resume, progress
    )
    model = result.model.cpu()

    val_logits = predict_logits(task, model, dataset.val, torch.device("cpu"))
    temperature = calibrate.fit_temperature(val_logits, dataset.val.y)
    calibrated = Calibrated(model, temperature).eval()

    out_dir = out_root / task.name
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / MODEL_FILE
    export_onnx(
        calibrated,
        task.example_input(4, dataset.val),
        task.input_spec(),
        task.dynamic_axes(),
        onnx_path,
    )
    parity_inputs = [
        task.example_input(b, dataset.val) for b in PARITY_BATCHES if b <= len(dataset.val)
    ]
    worst = parity(calibrated, onnx_path, parity_inputs)
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(f"torch/ONNX Runtime parity {worst:.2e} > {PARITY_TOLERANCE}")
    extra_files = task.write_extra_files(out_dir)

    val_eval = evaluate(task, onnx_path, dataset.val, len(dataset.labels))
    threshold = calibrate.abstain_threshold(val_eval.probabilities, dataset.val.y)
    test_eval = evaluate(task, onnx_path, dataset.test, len(dataset.labels))
    ece_after = calibrate.expected_calibration_error(test_eval.probabilities, test_eval.labels)
    ece_before = calibrate.expected_calibration_error(
        calibrate.uncalibrate(test_eval.probabilities, temperature), test_eval.labels
    )
    coverage, selective_acc = calibrate.selective_stats(
        test_eval.probabilities, test_eval.labels, threshold
    )
    print(
        f"{task.name}: test accuracy {test_eval.accuracy:.4f} "
        f"(95% {test_eval.interval_95[0]:.4f}-{test_eval.interval_95[1]:.4f}); "
        f"ECE {ece_before:.4f} -> {ece_after:.4f} at T={temperature:.3f}; parity {worst:.1e}"
    )
    print(format_confusion(test_eval.confusion, dataset.labels))

    card = build_card(
        task,
        dataset,
        config,
        result,
        device,
        onnx_path,
        temperature,
        threshold,
        val_eval.accuracy,
        test_eval.accuracy,
        test_eval.interval_95,
        ece_before,
        ece_after,
        coverage,
        selective_acc,
        worst,
        extra_files,
    )
    card.save(out_dir)
    plot_confusion(
        test_eval.confusion,
        dataset.labels,
        f"{task.name}: test accuracy {test_eval.accuracy:.2%} on {len(dataset.test)} samples "
        f"({dataset.test.source})",
        out_dir / CONFUSION_PNG,
    )
    plot_curves(
        result.history,
        f"{task.name}: best epoch {result.best_epoch} on validation",
        out_dir / CURVES_PNG,
    )
    return card


def build_card(
    task: Task,
    dataset: Dataset,
    config: dict[str, Any],
    result: Any,
    device: torch.device,
    onnx_path: Path,
    temperature: float,
    threshold: float,
    val_acc: float,
    test_acc: float,
    interval: tuple[float, float],
    ece_before: float,
    ece_after: float,
    coverage: float,
    selective_acc: float,
    parity_diff: float,
    extra_files: list[str],
) -> ModelCard:
    def metric(name: str, value: float, split: str, n: int, ci: tuple | None = None) -> Metric:
        return Metric(
            name=name,
            value=round(value, 6),
            dataset=dataset.name,
            split=split,
            samples=n,
            interval_95=ci,
        )

    n_test, n_val = len(dataset.test), len(dataset.val)
    notes = list(dataset.notes)
    if extra_files:
        notes.append(f"ships with: {', '.join(extra_files)}")
    notes.append(
        f"torch vs ONNX Runtime max abs difference {parity_diff:.2e} at batch sizes "
        f"{', '.join(map(str, PARITY_BATCHES))}"
    )
    return ModelCard(
        name=task.name,
        version=MODEL_VERSION,
        task=task.card_task,
        description=task.description,
        onnx_sha256=sha256_of(onnx_path),
        opset=OPSET,
        inputs=[task.input_spec()],
        outputs=[output_spec(len(dataset.labels))],
        labels=dataset.labels,
        preprocessing=task.preprocessing(),
        calibration=Calibration(
            temperature=round(temperature, 6),
            ece_test_before=round(ece_before, 6),
            ece_test_after=round(ece_after, 6),
            abstain_threshold=round(threshold, 6),
            abstain_rule=calibrate.ABSTAIN_RULE,
        ),
        metrics=[
            metric(
                "accuracy", test_acc, "test", n_test, (round(interval[0], 6), round(interval[1], 6))
            ),
            metric("accuracy", val_acc, "validation", n_val),
            metric("ece_uncalibrated", ece_before, "test", n_test),
            metric("ece", ece_after, "test", n_test),
            metric("abstain_coverage", coverage, "test", n_test),
            metric("accuracy_when_answering", selective_acc, "test", n_test),
        ],
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
            config=config,
            seed=config["seed"],
            epochs=config["epochs"],
            best_epoch=result.best_epoch,
            duration_s=round(result.duration_s, 1),
            device=str(device),
            machine=machine_description(device),
            finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            history=[{k: round(v, 5) for k, v in h.items()} for h in result.history],
        ),
        versions={pkg: version(pkg) for pkg in ("torch", "onnx", "onnxruntime", "numpy")},
    )
