"""Each task end to end on a small slice of its real data: a few optimisation steps, export,
checks, parity (run_task raises above 1e-4), ONNX Runtime evaluation and a valid card that the
server's own validation accepts. Full training runs are not tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from app.card import ModelCard, latest_version_dir, sha256_of
from training.pipeline import run_task
from training.robustness import DIGIT_STYLES
from training.tasks import TASK_NAMES, get_task

LIMITS = {"mnist": 256, "cifar10": 128, "imdb": 256, "speech": 160}
ROBUSTNESS = {
    "mnist": {f"accuracy_{style}" for style in DIGIT_STYLES},
    "cifar10": {"accuracy_jpeg_q75", "accuracy_enlarged_jpeg"},
    "imdb": {"accuracy_short_text"},
    "speech": {"accuracy_phone_8khz", "accuracy_reverb"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("models")
    for name in TASK_NAMES:
        run_task(
            get_task(name),
            data_dir,
            out,
            "cpu",
            {"epochs": 1},
            limit=LIMITS[name],
            progress=False,
            checkpoint_dir=out / "runs",
        )
    return {name: latest_version_dir(out, name) for name in TASK_NAMES}


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_writes_a_valid_card_and_dynamic_onnx(trained: dict[str, Path], name: str) -> None:
    model_dir = trained[name]
    card = ModelCard.load(model_dir)
    assert card.name == name
    assert card.onnx_sha256 == sha256_of(model_dir / card.onnx_file)
    assert card.opset >= 17
    assert len(card.outputs[0].shape) == 2 and card.outputs[0].shape[1] == len(card.labels)
    model = onnx.load(str(model_dir / card.onnx_file))
    onnx.checker.check_model(model)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == card.inputs[0].shape  # symbolic batch (and sequence) survived the export
    assert card.calibration.temperature > 0
    assert 0 <= card.calibration.abstain_threshold <= 1
    accuracy = card.metric("accuracy", "test")
    assert accuracy is not None and accuracy.samples == LIMITS[name]
    assert (model_dir / "confusion_matrix.png").stat().st_size > 1000
    assert (model_dir / "training_curves.png").stat().st_size > 1000
    assert len(card.training.history) == 1


@pytest.mark.parametrize("name", TASK_NAMES)
def test_card_carries_the_robustness_metrics(trained: dict[str, Path], name: str) -> None:
    card = ModelCard.load(trained[name])
    found = {m.name: m for m in card.metrics if m.name in ROBUSTNESS[name]}
    assert set(found) == ROBUSTNESS[name]
    for metric in found.values():
        assert metric.split == "test" and 0 <= metric.value <= 1
        assert metric.interval_95 is not None
        assert metric.interval_95[0] <= metric.value <= metric.interval_95[1]
        assert metric.dataset.endswith(f"({metric.name.removeprefix('accuracy_')})")
    if name == "imdb":  # one-liners of the test reviews: fewer than the reviews
        assert 0 < found["accuracy_short_text"].samples <= LIMITS[name]
        assert "one-line" in card.calibration.fitted_on or "last sentence" in (
            card.calibration.fitted_on
        )
    elif name == "mnist":  # digit photos: every 5th test digit
        assert all(m.samples == len(range(0, LIMITS[name], 5)) for m in found.values())
    else:
        assert all(m.samples == LIMITS[name] for m in found.values())


def test_exported_models_run_at_odd_batch_sizes_and_lengths(trained: dict[str, Path]) -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    for name, model_dir in trained.items():
        card = ModelCard.load(model_dir)
        session = ort.InferenceSession(
            str(model_dir / card.onnx_file), providers=["CPUExecutionProvider"]
        )
        spec = card.inputs[0]
        for batch, length in ((1, 1), (3, 17), (65, 300)):
            shape = [
                batch if d == "batch" else length if d == "sequence" else d for d in spec.shape
            ]
            x = (
                rng.integers(0, 50, shape)
                if spec.dtype == "int64"
                else rng.random(shape, dtype=np.float32)
            )
            probs = session.run(None, {spec.name: x})[0]
            assert probs.shape == (batch, len(card.labels)), name
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_evaluate_command_reproduces_the_card(trained: dict[str, Path], data_dir: Path) -> None:
    # the smoke card was measured on a slice; re-evaluation runs on the full test split, so it
    # must report a mismatch (exit 1) rather than silently agree
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "evaluate",
            "mnist",
            "--models-dir",
            str(trained["mnist"].parents[1]),
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "rows: true label" in proc.stdout
    assert proc.returncode == 1 and "the card records test accuracy" in proc.stdout


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "training", "mnist", "--data-dir", str(tmp_path), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "MNIST not found" in proc.stderr and "--download" in proc.stderr
