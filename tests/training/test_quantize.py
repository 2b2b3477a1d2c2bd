"""int8 static quantisation (training/quantize.py): on a small CNN built with onnx.helper the
int8 graph follows fp32, and `python -m training quantize` on a real (briefly trained) MNIST
model writes model.int8.onnx beside model.onnx and a card entry that round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from model_factory import image_model, mnist_cnn

from app.card import ModelCard, latest_version_dir, sha256_of
from training import ood_graph
from training.__main__ import main as training_main
from training.pipeline import run_task
from training.quantize import INT8_FILE, CalibrationDataReader, quantize_file, session
from training.tasks import get_task


class Batches(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"image": batch}


def blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bright strokes on black, like digits: most pixels 0, a few near 1."""
    x = (rng.random((n, 1, 28, 28)) > 0.85) * rng.uniform(0.5, 1.0, (n, 1, 28, 28))
    return x.astype(np.float32)


def test_quantized_cnn_follows_fp32(tmp_path: Path) -> None:
    built = mnist_cnn(tmp_path)
    rng = np.random.default_rng(0)
    out = tmp_path / INT8_FILE
    excluded = quantize_file(
        built.onnx_path, out, Batches([blobs(rng, 16) for _ in range(8)]), exclude_prefixes=[]
    )
    assert excluded == []
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Softmax"} <= ops

    x = blobs(rng, 64)  # not seen in calibration
    fp32 = session(built.onnx_path).run(None, {"image": x})[0]
    int8 = session(out).run(None, {"image": x})[0]
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-4)  # the softmax stayed fp32
    assert np.abs(int8 - fp32).max() < 0.1
    assert (int8.argmax(axis=1) == fp32.argmax(axis=1)).mean() >= 0.95
    assert out.stat().st_size < built.onnx_path.stat().st_size / 3  # int8 weights


def briefly_trained_mnist(models_dir: Path, data_dir: Path) -> Path:
    """A real MNIST model from one epoch on 512 images: models_dir/mnist/<version>/."""
    run_task(
        get_task("mnist"),
        data_dir,
        models_dir,
        "cpu",
        {"epochs": 1},
        limit=512,
        progress=False,
        checkpoint_dir=models_dir / "runs",
    )
    return latest_version_dir(models_dir, "mnist")


def test_quantize_command_writes_int8_beside_fp32(tmp_path: Path, data_dir: Path) -> None:
    model_dir = briefly_trained_mnist(tmp_path, data_dir)
    fp32_sha = ModelCard.load(model_dir).onnx_sha256
    argv = ["quantize", "mnist", "--models-dir", str(tmp_path), "--data-dir", str(data_dir)]
    assert training_main(argv) == 0

    card = ModelCard.load(model_dir)
    assert card.onnx_sha256 == fp32_sha == sha256_of(model_dir / card.onnx_file)
    assert card.int8 is not None
    assert card.int8.onnx_sha256 == sha256_of(model_dir / INT8_FILE)
    assert card.int8.size_bytes == (model_dir / INT8_FILE).stat().st_size
    assert card.int8.calibration.split == "validation" and card.int8.calibration.samples == 1024
    accuracy = card.int8.metric("accuracy")
    assert accuracy is not None and accuracy.interval_95 is not None
    assert accuracy.samples == card.int8.parity.samples == 10000  # the whole test split
    fp32_accuracy = card.metric("accuracy")
    assert fp32_accuracy is not None
    assert abs(accuracy.value - fp32_accuracy.value) < 0.02
    assert card.int8.parity.top1_agreement > 0.97
    assert [s.batch for s in card.int8.speed] == [1, 32]
    assert all(s.int8_ms_per_item > 0 and s.fp32_ms_per_item > 0 for s in card.int8.speed)
    assert card.serving_onnx("int8") == (INT8_FILE, card.int8.onnx_sha256)
    assert ModelCard.model_validate_json(card.model_dump_json()) == card


@pytest.fixture(autouse=True)
def _quiet_onnxruntime() -> None:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)


def test_out_of_distribution_score_stays_fp32(tmp_path: Path) -> None:
    """Calibrated on dim in-distribution images, a quantised Mahalanobis branch would clip the
    large distances of bright noise, the very inputs it is there to flag: it must stay fp32 while
    the classifier is quantised."""
    size, classes = 8, 10
    rng = np.random.default_rng(0)
    built = image_model(tmp_path / "models", "patches", size=size, digit_centering=False)
    model = onnx.load(str(built.onnx_path))
    taps = ood_graph.find_taps(model)

    def dim(n: int) -> np.ndarray:
        return rng.uniform(0, 0.2, (n, 1, size, size)).astype(np.float32)

    inside = dim(400)
    flat = inside.reshape(len(inside), -1)
    labels = (flat @ built.weights["W"]).argmax(axis=1) % classes
    params = {"mahalanobis": ood_graph.fit_mahalanobis(flat, labels)}
    scored_path = tmp_path / "scored.onnx"
    onnx.save(ood_graph.add_score(model, taps, "mahalanobis", params), str(scored_path))

    out = tmp_path / INT8_FILE
    excluded = quantize_file(scored_path, out, Batches([dim(32) for _ in range(8)]), [])
    nodes = onnx.load(str(scored_path)).graph.node
    ood_nodes = {n.name for n in nodes if n.name.startswith("ood/")}
    assert ood_nodes and set(excluded) == ood_nodes  # the classifier's MatMul is quantised
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)

    noise = rng.random((64, 1, size, size)).astype(np.float32)  # far brighter than calibration
    fp32 = session(scored_path).run(["ood_score"], {"image": noise})[0]
    int8 = session(out).run(["ood_score"], {"image": noise})[0]
    np.testing.assert_allclose(int8, fp32, rtol=0.02)


def test_quantize_records_the_served_copys_ood_figures(tmp_path: Path, data_dir: Path) -> None:
    """The server acts on the int8 copy's score, so its card entry gives that copy's share
    flagged on the test split and on every OOD report set, beside the fp32 figures."""
    trained = briefly_trained_mnist(tmp_path, data_dir)
    scored = tmp_path / "mnist" / "2"
    ood_argv = ["ood", "mnist", "--model-dir", str(trained), "--out", str(scored)]
    assert training_main([*ood_argv, "--data-dir", str(data_dir)]) == 0
    argv = ["quantize", "mnist", "--models-dir", str(tmp_path), "--data-dir", str(data_dir)]
    assert training_main(argv) == 0

    card = ModelCard.load(scored)
    assert card.ood is not None and card.int8 is not None
    for kind, fp32_share in card.ood.flagged.items():
        served = card.int8.metric(f"ood_flagged_{kind}")
        assert served is not None and served.samples > 0
        assert abs(served.value - fp32_share) <= 0.05, kind
    served_test = card.int8.metric("ood_abstain_rate")
    assert served_test is not None and served_test.samples == 10000
    assert abs(served_test.value - card.ood.test_abstain_rate) <= 0.02
