"""One task end to end: data → train (best epoch on validation) → temperature on validation →
export with the temperature folded in → checks and parity → ONNX Runtime evaluation on the
test split → models/<task>/ with model.onnx, card.json, figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.card import ModelCard, new_version_dir
from training import calibrate
from training.card import RunResult, build_card
from training.export import PARITY_BATCHES, PARITY_TOLERANCE, Calibrated, export_onnx, parity
from training.figures import write_figures
from training.loop import predict_logits, train
from training.measure import calibration_probabilities, format_confusion, measure
from training.robustness import robustness_metrics
from training.tasks.base import Task

MODEL_FILE = "model.onnx"


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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

    calibration = task.calibration_split(dataset.val)
    val_logits = predict_logits(task, model, calibration, torch.device("cpu"))
    temperature = calibrate.fit_temperature(val_logits, calibration.y)
    calibrated = Calibrated(model, temperature).eval()

    out_dir = new_version_dir(out_root, task.name)
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

    val_eval = measure(task, onnx_path, dataset.val, len(dataset.labels))
    threshold = calibrate.abstain_threshold(
        *calibration_probabilities(task, onnx_path, dataset.val, val_eval)
    )
    test_eval = measure(task, onnx_path, dataset.test, len(dataset.labels))
    card = build_card(
        RunResult(
            task=task,
            dataset=dataset,
            config=config,
            training=result,
            device=device,
            onnx_path=onnx_path,
            temperature=temperature,
            abstain_threshold=threshold,
            parity=worst,
            extra_files=extra_files,
            validation=val_eval,
            test=test_eval,
            calibration_fitted_on=calibration.source
            if calibration is not dataset.val
            else "validation",
        )
    )
    card.metrics.extend(
        robustness_metrics(task, onnx_path, dataset.test, card.data.dataset, len(dataset.labels))
    )
    low, high = test_eval.interval_95
    print(
        f"{task.name}: test accuracy {test_eval.accuracy:.4f} (95% {low:.4f}-{high:.4f}); "
        f"ECE {card.calibration.ece_test_before:.4f} -> {card.calibration.ece_test_after:.4f} "
        f"at T={temperature:.3f}; parity {worst:.1e}"
    )
    print(format_confusion(test_eval.confusion, dataset.labels))
    for metric in card.metrics:
        if metric.name.startswith("accuracy_") and metric.split == "test":
            print(f"{task.name}: {metric.name} {metric.value:.4f} on {metric.samples}")
    card.save(out_dir)
    write_figures(out_dir, card, test_eval)
    return card
