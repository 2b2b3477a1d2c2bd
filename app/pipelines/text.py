"""Text: one or more strings per request.

Texts are tokenised in the worker with the model's own `app.tokenizer` vocabulary and fed as
int64 `token_ids` [batch, sequence], padded with the card's `pad_id`. Within a batch the texts
are grouped by token count (power-of-two buckets), one ONNX Runtime run per group, so a short
review is padded to at most twice its length, never to the longest review of the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.card import ModelCard, TextPreprocessing, sha256_of
from app.pipelines.base import CardMismatch, Pipeline, batch_buckets, bucket_for
from app.tokenizer import Tokenizer


def _length_bucket(length: int) -> int:
    """The power of two at or above `length`: texts in one bucket share a padded length."""
    return 1 << max(0, length - 1).bit_length()


class TextPipeline(Pipeline):
    task = "text-classification"
    request_kind = "texts"
    item_noun = "text"

    @classmethod
    def check_card(cls, card: ModelCard) -> None:
        prep = card.preprocessing
        if not isinstance(prep, TextPreprocessing):
            raise CardMismatch(f"task {card.task} needs text preprocessing, card has {prep.kind}")
        spec = card.inputs[0]
        if spec.dtype != "int64" or spec.shape != ["batch", "sequence"]:
            raise CardMismatch(
                f"input {spec.name} must be int64 ['batch', 'sequence'], card says "
                f"{spec.dtype} {spec.shape}"
            )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        prep = self.card.preprocessing
        assert isinstance(prep, TextPreprocessing)
        self.pad_id = prep.pad_id
        path = self.directory / prep.tokenizer_file
        if prep.tokenizer_sha256 and path.is_file() and sha256_of(path) != prep.tokenizer_sha256:
            raise CardMismatch(
                f"{path}: sha256 does not match the card's tokenizer_sha256 (file changed or "
                "corrupt)"
            )
        try:
            self.tokenizer = Tokenizer.load(path)
        except Exception as exc:
            raise CardMismatch(f"{path}: cannot load the tokenizer: {exc}") from exc
        self.max_chars = min(self.settings.max_text_chars, prep.max_chars)
        self.length_buckets = batch_buckets(max(1, self.tokenizer.max_ids))

    def decode(self, raw: str) -> np.ndarray:
        ids = self.tokenizer.encode(raw)
        if ids.size == 0:  # nothing the vocabulary knows: one padding token, the model's "blank"
            return np.full(1, self.pad_id, dtype=np.int64)
        return ids

    def group(self, arrays: Sequence[np.ndarray]) -> list[list[int]]:
        groups: dict[int, list[int]] = defaultdict(list)
        for index, ids in enumerate(arrays):
            groups[_length_bucket(len(ids))].append(index)
        return [groups[length] for length in sorted(groups)]

    def collate(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        length = max(len(ids) for ids in arrays)
        if self.pad_to_buckets:
            length = bucket_for(length, self.length_buckets)
        batch = np.full((len(arrays), length), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(arrays):
            batch[row, : len(ids)] = ids
        return {self.input_name: batch}

    def sequence_lengths(self) -> list[int]:
        return self.length_buckets

    def example(self) -> str:
        known = list(self.tokenizer.vocab)[:50]
        return " ".join(known) or "warm-up"
