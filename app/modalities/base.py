"""What every modality shares: the worker-side batch pipeline and the answer's shape.

A modality turns raw request payloads (bytes of an upload, a string) into the graph's input and
the graph's output into per-item scores. Its hooks, in the order a batch meets them:

    decode(raw) -> array           one item; raise a ServiceError (422/413) to fail only that item
    group(arrays) -> [[index]]     which decoded items share one ONNX Runtime run (default: all)
    collate(arrays) -> feed        stack one group into the graph's input tensors
    (session.run)                  the graph; its first output holds class probabilities
    top_scores(probabilities)      unbatch: sorted top classes per item

`process` chains them for a whole batch and runs in the batcher's worker thread, so the event
loop only ever sees raw bytes going in and small Python lists coming out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import BaseModel, Field

from app.card import BATCH, SEQUENCE, ModelCard
from app.errors import InvalidInput, ServiceError
from app.runtime import ModelSession
from app.settings import Settings


class Upload(NamedTuple):
    """One uploaded file as the worker receives it: the client's file name and its bytes."""

    name: str
    data: bytes


class Scores(NamedTuple):
    """The top classes of one item, most probable first (indices into the card's labels)."""

    indices: list[int]
    probabilities: list[float]


class CardMismatch(ValueError):
    """The card describes a graph this modality cannot feed."""


def top_scores(probabilities: np.ndarray, k: int) -> list[Scores]:
    """Sorted top-k classes of every row, computed for the whole batch at once."""
    k = min(k, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(probabilities, order, axis=1).astype(np.float64).round(6)
    return [Scores(i, p) for i, p in zip(order.tolist(), top.tolist(), strict=True)]


class Modality(ABC):
    """Base class of the per-modality pipelines; one instance per served model."""

    task: ClassVar[str]

    def __init__(
        self, card: ModelCard, directory: Path, session: ModelSession, settings: Settings
    ) -> None:
        self.check_card(card)
        self.card = card
        self.directory = directory
        self.session = session
        self.settings = settings
        self.input_name = card.inputs[0].name
        self.max_top_k = min(settings.max_top_k, len(card.labels))

    @classmethod
    @abstractmethod
    def check_card(cls, card: ModelCard) -> None:
        """Raise CardMismatch unless the card's tensors fit this modality's preprocessing."""

    @abstractmethod
    def decode(self, raw: Any) -> np.ndarray:
        """One raw item → one graph input row (without the batch axis)."""

    @abstractmethod
    def example(self) -> Any:
        """A valid raw item, used to warm up the decode path."""

    def describe_failure(self, raw: Any, exc: Exception) -> str:
        return f"cannot decode input: {exc}"

    def group(self, arrays: Sequence[np.ndarray]) -> list[list[int]]:
        return [list(range(len(arrays)))]

    def collate(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {self.input_name: np.stack(arrays)}

    def process(self, raws: Sequence[Any]) -> list[Scores | ServiceError]:
        """Decode, batch, run and unbatch a whole batch (runs in a worker thread).

        An item that fails to decode gets its own error; the others still run. An error from
        the graph itself propagates: the batcher fails exactly this batch.
        """
        results: list[Scores | ServiceError | None] = [None] * len(raws)
        arrays: list[np.ndarray] = []
        positions: list[int] = []
        for position, raw in enumerate(raws):
            try:
                arrays.append(self.decode(raw))
                positions.append(position)
            except ServiceError as exc:
                results[position] = exc
            except Exception as exc:  # decoders raise many types; all mean "bad input"
                results[position] = InvalidInput(self.describe_failure(raw, exc))
        if not arrays:
            return results  # type: ignore[return-value]  # every item failed to decode
        for members in self.group(arrays):
            feed = self.collate([arrays[m] for m in members])
            probabilities = self.session.run(feed)
            for member, scores in zip(
                members, top_scores(probabilities, self.max_top_k), strict=True
            ):
                results[positions[member]] = scores
        return results  # type: ignore[return-value]  # every slot is filled above

    # -- warm-up ---------------------------------------------------------------------------

    def sequence_lengths(self) -> list[int]:
        """Sequence lengths warm-up should cover (only variable-length inputs have any)."""
        return [1]

    def warmup_feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """Zero tensors at every batch bucket (and sequence length) the session will see."""
        for rows in self.session.buckets:
            for length in self.sequence_lengths():
                feed = {}
                for spec in self.card.inputs:
                    shape = [
                        rows if dim == BATCH else length if dim == SEQUENCE else dim
                        for dim in spec.shape
                    ]
                    feed[spec.name] = np.zeros(shape, dtype=spec.dtype)
                yield feed

    def warm_up(self) -> None:
        for feed in self.warmup_feeds():
            self.session.run(feed)
        results = self.process([self.example()] * self.session.buckets[-1])
        failures = [r for r in results if isinstance(r, ServiceError)]
        if failures:
            raise RuntimeError(f"warm-up example was rejected: {failures[0].message}")


# -- the answer's shape (also documents the responses in /docs) ----------------------------


class ClassScore(BaseModel):
    label: str
    probability: float = Field(ge=0, le=1)


class Prediction(BaseModel):
    label: str = Field(description="Most probable class.")
    probability: float = Field(ge=0, le=1, description="Its calibrated probability.")
    abstain: bool = Field(
        description="True when `probability` is below the model's abstain threshold "
        "(chosen on validation data): the model is not sure; say so to the user."
    )
    top_k: list[ClassScore] = Field(description="The `top_k` most probable classes.")


def prediction_dict(
    labels: list[str],
    scores: Scores,
    top_k: int,
    threshold: float,
    head: dict[str, Any],
    with_score: bool = False,
) -> dict[str, Any]:
    """One item's answer; `head` holds the modality's own leading fields (e.g. the file name),
    `with_score` adds `score`, the name sentiment clients expect for the label's probability."""
    best = scores.probabilities[0]
    head["label"] = labels[scores.indices[0]]
    if with_score:
        head["score"] = best
    head["probability"] = best
    head["abstain"] = best < threshold
    head["top_k"] = [
        {"label": labels[i], "probability": p}
        for i, p in zip(scores.indices[:top_k], scores.probabilities[:top_k], strict=True)
    ]
    return head
