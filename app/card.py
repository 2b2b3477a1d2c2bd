"""The model card: the one contract between `training/` (which writes it) and `app/` (reads it).

A model version lives in `models/<name>/<version>/` as `model.onnx` plus `card.json`. The card
says everything the server needs to feed the graph and read its answer, and everything a user
needs to trust it: the data it was trained and measured on, how it was trained, and how well
calibrated it is.

This module imports neither torch nor onnxruntime, so both halves can depend on it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

CARD_FILE = "card.json"
SCHEMA_VERSION = 1

# Symbolic (dynamic) dimension names used in tensor shapes.
BATCH = "batch"
SEQUENCE = "sequence"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output. Dynamic dimensions are named (`batch`, `sequence`)."""

    name: str
    dtype: Literal["float32", "int64"]
    shape: list[int | str]


class ImagePreprocessing(_Strict):
    """Images are fed as float32 NCHW in [0, 1]; normalisation and any test-time augmentation
    live inside the graph, so this is all the server must do."""

    kind: Literal["image"] = "image"
    height: int
    width: int
    channels: Literal[1, 3]
    # MNIST-style digits: white digit on black, scaled into 20x20 and centred by mass in 28x28.
    digit_centering: bool = False


class TextPreprocessing(_Strict):
    """Texts are tokenised by `app.tokenizer` with the vocabulary in `tokenizer_file` and fed as
    int64 token ids, padded with `pad_id` to the longest item of the batch."""

    kind: Literal["text"] = "text"
    tokenizer_file: str = "tokenizer.json"
    pad_id: int = 0
    max_chars: int = Field(description="Longest text (in characters) the model was built for.")
    tokenizer_sha256: str | None = Field(
        default=None, description="sha256 of `tokenizer_file`; absent on cards written before it"
    )


class AudioPreprocessing(_Strict):
    """Audio is fed as a float32 mono waveform of `clip_samples` samples at `sample_rate` Hz;
    the log-mel front end is inside the graph."""

    kind: Literal["audio"] = "audio"
    sample_rate: int = 16000
    clip_samples: int = 16000


Preprocessing = Annotated[
    ImagePreprocessing | TextPreprocessing | AudioPreprocessing, Field(discriminator="kind")
]


class Metric(_Strict):
    """A figure measured on the exported ONNX model, with what it was measured on."""

    name: str = Field(description="e.g. accuracy, ece, abstain_coverage")
    value: float
    dataset: str
    split: str = Field(description="train, validation or test, as this card's `data` defines them")
    samples: int
    interval_95: tuple[float, float] | None = Field(
        default=None, description="bootstrap 95% interval, where one was computed"
    )


class Calibration(_Strict):
    """Temperature scaling fitted on the validation split and folded into the graph: the
    probabilities the graph outputs are already calibrated."""

    method: Literal["temperature"] = "temperature"
    temperature: float
    fitted_on: str = "validation"
    ece_bins: int = 15
    ece_test_before: float
    ece_test_after: float
    # Below this top-class probability the server answers "not sure" (chosen on validation).
    abstain_threshold: float
    abstain_rule: str


class OodDetection(_Strict):
    """Out-of-distribution detection: a second graph output scores how unlike the training data
    each item is. Calibration only speaks for inputs like the training data; this says when an
    input is unlike anything the model knows (a blank page, noise, another language)."""

    output: str = Field(description="graph output holding the score, float32 [batch]")
    score: str = Field(description="method: energy, max_logit, max_probability, mahalanobis, ...")
    threshold: float
    higher_is_ood: bool = True
    fitted_on: str = Field(description="data the score's statistics and the threshold came from")
    rule: str = Field(default="", description="how the threshold was chosen")
    auroc: dict[str, float] = Field(
        default={}, description="per OOD kind: AUROC against in-distribution validation items"
    )
    flagged: dict[str, float] = Field(
        default={}, description="per OOD kind: share of its items past the threshold"
    )
    candidates_auroc: dict[str, dict[str, float]] = Field(
        default={}, description="every score tried: its AUROC per OOD kind"
    )
    validation_abstain_rate: float = Field(description="in-distribution validation flagged")
    test_abstain_rate: float = Field(description="in-distribution test split flagged")
    test_samples: int = 0


class SplitInfo(_Strict):
    samples: int
    source: str = Field(description="which files / part of the original dataset")


class DataInfo(_Strict):
    dataset: str
    citation: str = ""
    splits: dict[str, SplitInfo]
    notes: list[str] = []


class TrainingInfo(_Strict):
    command: str
    config: dict[str, object]
    seed: int
    epochs: int
    best_epoch: int
    duration_s: float
    device: str
    machine: str
    finished_at: str
    history: list[dict[str, float]] = Field(
        default=[], description="per-epoch train loss/accuracy and validation accuracy"
    )


class BaselineSummary(_Strict):
    """The classic tutorial model for the same task (`python -m training <task> --arch seed`),
    trained on the same splits and exported, calibrated and measured the same way: beside the
    default's own figures it shows what the default buys. Latencies of both models are measured
    together, by the same method, on the same machine, since only their ratio travels."""

    description: str
    command: str
    epochs: int
    training_duration_s: float
    onnx_sha256: str
    onnx_bytes: int
    default_onnx_bytes: int
    accuracy: float = Field(description="on the default's test split")
    accuracy_interval_95: tuple[float, float] | None = None
    ece: float = Field(description="test ECE after the baseline's own temperature scaling")
    test_samples: int
    ms_per_item: float
    default_ms_per_item: float
    latency_method: str
    measured_at: str


class CalibrationSet(_Strict):
    """The data the int8 activation ranges were calibrated on."""

    split: str = "validation"
    samples: int
    source: str


class QuantParity(_Strict):
    """How closely the int8 graph follows the fp32 one, over a whole split."""

    split: str = "test"
    samples: int
    top1_agreement: float
    max_abs_probability_difference: float


class QuantSpeed(_Strict):
    """ONNX Runtime compute per item, fp32 vs int8, on `threads` threads (inference only; the
    best of repeated runs of one batch)."""

    batch: int
    threads: int = 1
    fp32_ms_per_item: float
    int8_ms_per_item: float


# The server picks int8 (precision "auto") when it loses at most this much test accuracy.
INT8_MAX_ACCURACY_LOSS = 0.002


class QuantizedVariant(_Strict):
    """An int8 copy of `model.onnx` (`python -m training quantize <task>`): same inputs, outputs
    and labels; its own accuracy, calibration error and parity with fp32, measured on test."""

    onnx_file: str = "model.int8.onnx"
    onnx_sha256: str
    size_bytes: int
    method: str
    quantized_op_types: list[str]
    excluded_nodes: list[str] = Field(default=[], description="nodes kept in fp32")
    calibration: CalibrationSet
    metrics: list[Metric] = Field(description="test accuracy (with interval) and ece")
    parity: QuantParity
    speed: list[QuantSpeed] = []
    onnxruntime: str = ""
    machine: str = ""

    def metric(self, name: str, split: str = "test") -> Metric | None:
        return next((m for m in self.metrics if m.name == name and m.split == split), None)


class ModelCard(_Strict):
    """All the server needs to serve `model.onnx`, and all a user needs to trust it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    version: str
    task: Literal["image-classification", "text-classification", "audio-classification"]
    description: str
    onnx_file: str = "model.onnx"
    onnx_sha256: str
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec] = Field(
        description="First output: calibrated class probabilities, shape [batch, len(labels)]"
    )
    labels: list[str]
    preprocessing: Preprocessing
    calibration: Calibration
    # Absent on cards written before OOD detection existed: those models never say "unlike".
    ood: OodDetection | None = None
    metrics: list[Metric]
    data: DataInfo
    training: TrainingInfo
    versions: dict[str, str] = Field(description="library versions used to train and export")
    baseline: BaselineSummary | None = Field(
        default=None, description="the tutorial baseline's figures; absent on older cards"
    )
    int8: QuantizedVariant | None = None

    def metric(self, name: str, split: str = "test") -> Metric | None:
        return next((m for m in self.metrics if m.name == name and m.split == split), None)

    def int8_loss(self) -> float | None:
        """fp32 minus int8 test accuracy, where both are on the card."""
        fp32 = self.metric("accuracy")
        int8 = self.int8.metric("accuracy") if self.int8 is not None else None
        return None if fp32 is None or int8 is None else fp32.value - int8.value

    def serving_onnx(self, precision: Literal["auto", "fp32", "int8"] = "auto") -> tuple[str, str]:
        """(file, sha256) to serve. auto: int8 when its test accuracy is within
        INT8_MAX_ACCURACY_LOSS of fp32, else fp32; int8 without an int8 entry is an error."""
        fp32 = (self.onnx_file, self.onnx_sha256)
        if precision == "fp32":
            return fp32
        if self.int8 is None:
            if precision == "int8":
                raise ValueError(f"{self.name}: the card has no int8 model")
            return fp32
        int8 = (self.int8.onnx_file, self.int8.onnx_sha256)
        if precision == "int8":
            return int8
        loss = self.int8_loss()
        # 1e-9: accuracies are rounded to 6 places on the card
        return int8 if loss is not None and loss <= INT8_MAX_ACCURACY_LOSS + 1e-9 else fp32

    @classmethod
    def load(cls, model_dir: Path) -> ModelCard:
        return cls.model_validate_json((model_dir / CARD_FILE).read_bytes())

    def save(self, model_dir: Path) -> Path:
        path = model_dir / CARD_FILE
        # a card without an int8 model is written exactly as before the field existed
        data = self.model_dump(mode="json")
        if data.get("int8") is None:
            data.pop("int8", None)
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def version_dirs(model_root: Path) -> dict[int, Path]:
    """The version folders of one model (`models/<name>/<positive integer>/`), by number."""
    if not model_root.is_dir():
        return {}
    return {
        int(p.name): p
        for p in model_root.iterdir()
        if p.is_dir() and p.name.isdigit() and not p.name.startswith("0")
    }


def latest_version_dir(models_dir: Path, name: str) -> Path:
    """Where the newest version of `name` lives: its highest version folder, or the model
    folder itself in the flat layout of before versions (read as version 1)."""
    versions = version_dirs(models_dir / name)
    return versions[max(versions)] if versions else models_dir / name


def new_version_dir(models_dir: Path, name: str) -> Path:
    """The folder a newly trained version of `name` goes to: one above the highest version
    (2 beside a flat model, which is version 1)."""
    root = models_dir / name
    versions = version_dirs(root)
    if versions:
        return root / str(max(versions) + 1)
    return root / ("2" if (root / CARD_FILE).exists() else "1")
