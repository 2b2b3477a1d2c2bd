"""The card's optional int8 entry: old cards load and save unchanged, and `serving_onnx` picks
int8 only when the card shows it within INT8_MAX_ACCURACY_LOSS of fp32 (or when forced)."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_factory import DIGITS, make_card

from app.card import (
    INT8_MAX_ACCURACY_LOSS,
    CalibrationSet,
    ImagePreprocessing,
    Metric,
    ModelCard,
    QuantizedVariant,
    QuantParity,
    QuantSpeed,
    TensorSpec,
)


def fp32_card(accuracy: float = 0.99) -> ModelCard:
    card = make_card(
        "digits",
        "image-classification",
        [TensorSpec(name="image", dtype="float32", shape=["batch", 1, 28, 28])],
        DIGITS,
        ImagePreprocessing(height=28, width=28, channels=1),
        onnx_sha256="a" * 64,
    )
    metric = Metric(name="accuracy", value=accuracy, dataset="d", split="test", samples=10000)
    return card.model_copy(update={"metrics": [metric]})


def int8_entry(accuracy: float) -> QuantizedVariant:
    return QuantizedVariant(
        onnx_sha256="b" * 64,
        size_bytes=1000,
        method="test",
        quantized_op_types=["Conv"],
        calibration=CalibrationSet(samples=1024, source="validation"),
        metrics=[
            Metric(
                name="accuracy",
                value=accuracy,
                dataset="d",
                split="test",
                samples=10000,
                interval_95=(accuracy - 0.001, accuracy + 0.001),
            ),
            Metric(name="ece", value=0.01, dataset="d", split="test", samples=10000),
        ],
        parity=QuantParity(
            samples=10000, top1_agreement=0.999, max_abs_probability_difference=0.05
        ),
        speed=[QuantSpeed(batch=1, fp32_ms_per_item=0.3, int8_ms_per_item=0.15)],
    )


def test_a_card_without_int8_saves_as_before_and_serves_fp32(tmp_path: Path) -> None:
    card = fp32_card()
    card.save(tmp_path)
    text = (tmp_path / "card.json").read_text()
    assert '"int8"' not in text  # old readers (strict, extra="forbid") still accept it
    loaded = ModelCard.load(tmp_path)
    assert loaded == card and loaded.int8 is None
    assert loaded.serving_onnx("auto") == ("model.onnx", "a" * 64)
    assert loaded.serving_onnx("fp32") == ("model.onnx", "a" * 64)
    with pytest.raises(ValueError, match="no int8"):
        loaded.serving_onnx("int8")


def test_the_int8_entry_survives_a_round_trip(tmp_path: Path) -> None:
    card = fp32_card().model_copy(update={"int8": int8_entry(0.989)})
    card.save(tmp_path)
    loaded = ModelCard.load(tmp_path)
    assert loaded == card
    assert loaded.int8 is not None and loaded.int8.metric("accuracy").interval_95 == (0.988, 0.99)


@pytest.mark.parametrize(
    ("fp32", "int8", "expected"),
    [
        (0.99, 0.99, "model.int8.onnx"),
        (0.99, 0.995, "model.int8.onnx"),  # int8 better: serve it
        (0.99, 0.99 - INT8_MAX_ACCURACY_LOSS, "model.int8.onnx"),  # exactly at the limit
        (0.99, 0.987, "model.onnx"),  # 0.3 pp lost: fp32
        (0.918, 0.917, "model.int8.onnx"),
    ],
)
def test_auto_serves_int8_only_within_the_allowed_loss(
    fp32: float, int8: float, expected: str
) -> None:
    card = fp32_card(fp32).model_copy(update={"int8": int8_entry(int8)})
    assert card.serving_onnx("auto")[0] == expected
    assert card.serving_onnx("fp32") == ("model.onnx", "a" * 64)
    assert card.serving_onnx("int8") == ("model.int8.onnx", "b" * 64)
