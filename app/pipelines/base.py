"""What every pipeline shares: turning raw request items into graph inputs and the graph's
probabilities into per-item scores. No HTTP and no ONNX Runtime here: the serving core runs the
graph between `collate` and `top_scores`.

A pipeline's hooks, in the order a batch meets them:

    decode(raw) -> array           one item; raise a ServiceError (422/413) to fail only that item
    group(arrays) -> [[index]]     which decoded items share one graph run (default: all)
    collate(arrays) -> feed        stack one group into the graph's input tensors
    (the graph)                    its first output holds class probabilities
    top_scores(probabilities)      unbatch: sorted top classes per item

All of it runs in a batcher's worker thread, so the event loop only ever sees raw bytes going
in and small Python lists coming out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from app.card import BATCH, SEQUENCE, ModelCard
from app.errors import InvalidInput, ServiceError
from app.settings import Settings


class Upload(NamedTuple):
    """One uploaded file as the worker receives it: the client's file name and its bytes."""

    name: str
    data: bytes


class Scores(NamedTuple):
    """The classes of one item, most probable first (indices into the card's labels), and
    why the answer must abstain whatever the probability (`no_content`,
    `out_of_distribution`), if it must."""

    indices: list[int]
    probabilities: list[float]
    reason: str | None = None


class CardMismatch(ValueError):
    """The card describes a graph this pipeline cannot feed."""


@dataclass(slots=True)
class Decoded:
    """A batch after decoding: the arrays of the items that decoded, their positions in the
    batch, and an error for every position that did not."""

    arrays: list[np.ndarray]
    positions: list[int]
    errors: dict[int, ServiceError]
    reasons: dict[int, str]  # position -> why the answer abstains whatever the model says


def batch_buckets(max_size: int) -> list[int]:
    """Powers of two below `max_size`, then `max_size` itself: the batch sizes (and sequence
    lengths) warm-up runs and, on CUDA, the sizes inputs are padded to."""
    sizes = []
    size = 1
    while size < max_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_size)
    return sizes


def bucket_for(size: int, buckets: Sequence[int]) -> int:
    return next((b for b in buckets if b >= size), buckets[-1])


def top_scores(probabilities: np.ndarray, k: int) -> list[Scores]:
    """Sorted top-k classes of every row, computed for the whole batch at once."""
    k = min(k, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(probabilities, order, axis=1).astype(np.float64).round(6)
    return [Scores(i, p) for i, p in zip(order.tolist(), top.tolist(), strict=True)]


class Pipeline(ABC):
    """Base class of the per-input-kind pipelines; one instance per served model version.

    The class attributes tell the HTTP layer how requests of this kind arrive: `request_kind`
    is "files" (multipart uploads of `accepted_types`) or "texts" (JSON strings).
    """

    task: ClassVar[str]
    request_kind: ClassVar[Literal["files", "texts"]]
    accepted_types: ClassVar[Collection[str]] = ()
    item_noun: ClassVar[str]  # "image", "audio", "text": how messages name one item

    def __init__(
        self, card: ModelCard, directory: Path, settings: Settings, pad_to_buckets: bool = False
    ) -> None:
        self.check_card(card)
        self.card = card
        self.directory = directory
        self.settings = settings
        self.pad_to_buckets = pad_to_buckets
        self.input_name = card.inputs[0].name
        self.max_top_k = min(settings.max_top_k, len(card.labels))

    @classmethod
    @abstractmethod
    def check_card(cls, card: ModelCard) -> None:
        """Raise CardMismatch unless the card's tensors fit this pipeline's preprocessing."""

    @abstractmethod
    def decode(self, raw: Any) -> np.ndarray:
        """One raw item → one graph input row (without the batch axis)."""

    @abstractmethod
    def example(self) -> Any:
        """A valid raw item, used to warm up the decode path."""

    def decode_checked(self, raw: Any) -> tuple[np.ndarray, str | None]:
        """`decode`, plus a reason to abstain found while decoding (e.g. no digit in the
        picture); the model still runs, so the answer keeps its label and probability."""
        return self.decode(raw), None

    def describe_failure(self, raw: Any, exc: Exception) -> str:
        return f"cannot decode input: {exc}"

    def decode_all(self, raws: Sequence[Any]) -> Decoded:
        """Decode every item; an item that fails gets its own error, the others go on."""
        decoded = Decoded([], [], {}, {})
        for position, raw in enumerate(raws):
            try:
                array, reason = self.decode_checked(raw)
                decoded.arrays.append(array)
                decoded.positions.append(position)
                if reason is not None:
                    decoded.reasons[position] = reason
            except ServiceError as exc:
                decoded.errors[position] = exc
            except Exception as exc:  # decoders raise many types; all mean "bad input"
                decoded.errors[position] = InvalidInput(self.describe_failure(raw, exc))
        return decoded

    def group(self, arrays: Sequence[np.ndarray]) -> list[list[int]]:
        return [list(range(len(arrays)))]

    def collate(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {self.input_name: np.stack(arrays)}

    def sequence_lengths(self) -> list[int]:
        """Sequence lengths warm-up should cover (only variable-length inputs have any)."""
        return [1]

    def warmup_feeds(self, batch_sizes: Sequence[int]) -> Iterator[dict[str, np.ndarray]]:
        """Zero tensors at every batch size (and sequence length) the graph will see."""
        for rows in batch_sizes:
            for length in self.sequence_lengths():
                feed = {}
                for spec in self.card.inputs:
                    shape = [
                        rows if dim == BATCH else length if dim == SEQUENCE else dim
                        for dim in spec.shape
                    ]
                    feed[spec.name] = np.zeros(shape, dtype=spec.dtype)
                yield feed
