"""The model card: the one contract between `training/` (which writes it) and `app/` (reads it).

A model lives in `models/<name>/` as `model.onnx` plus `card.json`. The card says everything the
server needs to feed the graph and read its answer, and everything a user needs to trust it: the
data it was trained and measured on, how it was trained, and how well calibrated it is.

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

    def metric(self, name: str, split: str = "test") -> Metric | None:
        return next((m for m in self.metrics if m.name == name and m.split == split), None)

    @classmethod
    def load(cls, model_dir: Path) -> ModelCard:
        return cls.model_validate_json((model_dir / CARD_FILE).read_bytes())

    def save(self, model_dir: Path) -> Path:
        path = model_dir / CARD_FILE
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
