"""Review sentiment: logistic regression over a binary bag of word 1-3-grams scaled by their
naive-Bayes log-count ratios (NBSVM, Wang & Manning 2012), written as an embedding lookup so the
graph takes padded token ids.

Each n-gram's weight is a learned coefficient times its log-count ratio on the training split.
On validation this beat both pure naive Bayes (89.7%) and NBSVM's pull towards it (90.4%):
coefficients start at 0 with a small L2 penalty (92.6%). The tokenizer (shared with the server,
`app/tokenizer.py`) ships beside the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from app.card import BATCH, SEQUENCE, TextPreprocessing
from app.tokenizer import PAD_ID, Tokenizer
from training.data import Dataset, Split, imdb
from training.tasks.base import Task

TOKENIZER_FILE = "tokenizer.json"
MAX_CHARS = 20_000


class NBLogisticRegression(nn.Module):
    """score = Σ_{n-grams in text} w_i · r_i + b; logits = (-score/2, score/2)."""

    def __init__(self, nb_ratio: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("nb_ratio", nb_ratio)  # row 0 (padding) is 0
        self.weight = nn.Parameter(torch.zeros(len(nb_ratio)))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        score = (self.weight * self.nb_ratio)[token_ids].sum(dim=1) + self.bias
        half = 0.5 * score
        return torch.stack([-half, half], dim=1)


def pad_batch(items: list[np.ndarray]) -> np.ndarray:
    out = np.full((len(items), max(1, *(len(i) for i in items))), PAD_ID, dtype=np.int64)
    for row, ids in enumerate(items):
        out[row, : len(ids)] = ids
    return out


class ImdbTask(Task):
    name = "imdb"
    card_task = "text-classification"
    description = (
        "Sentiment (positive / negative) of an English movie review; NBSVM-style "
        "logistic regression over word 1-3-grams, trained from scratch."
    )
    input_name = "token_ids"
    input_dtype = "int64"
    input_shape: ClassVar[list[int | str]] = [BATCH, SEQUENCE]
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "epochs": 3,
        "batch_size": 64,
        "lr": 0.005,
        "l2": 3e-6,
        "ngram_max": 3,
        "min_docs": 3,
        "max_vocab": 800_000,
        "max_ids": 12_000,
        "nb_alpha": 1.0,
    }

    def load_data(self, data_dir: Path, download: bool, seed: int) -> Dataset:
        return imdb.load(data_dir, download, seed)

    def prepare(self, dataset: Dataset, config: dict[str, Any]) -> None:
        self.config = config
        self.tokenizer = Tokenizer.fit(
            dataset.train.x,
            config["ngram_max"],
            config["min_docs"],
            config["max_vocab"],
            config["max_ids"],
        )
        for split in (dataset.train, dataset.val, dataset.test):
            split.x = [self.tokenizer.encode(t) for t in split.x]
        self.nb_ratio = self.naive_bayes_ratio(dataset.train, config["nb_alpha"])
        print(f"imdb: vocabulary of {len(self.tokenizer.vocab):,} n-grams", flush=True)

    def restore(self, model_dir: Path, dataset: Dataset) -> None:
        self.tokenizer = Tokenizer.load(model_dir / TOKENIZER_FILE)
        for split in (dataset.train, dataset.val, dataset.test):
            split.x = [self.tokenizer.encode(t) for t in split.x]

    def naive_bayes_ratio(self, train: Split, alpha: float) -> torch.Tensor:
        size = self.tokenizer.vocab_size
        counts = [np.full(size, alpha) for _ in range(2)]
        for ids, label in zip(train.x, train.y, strict=True):
            counts[label][ids] += 1
        pos, neg = (c / c[1:].sum() for c in (counts[1], counts[0]))
        ratio = np.log(pos / neg).astype(np.float32)
        ratio[PAD_ID] = 0.0
        return torch.from_numpy(ratio)

    def batches(
        self, split: Split, batch_size: int, shuffle: bool, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Training: length-sorted buckets in random order, so short reviews are not padded to
        long ones. Evaluation: the split's own order, so outputs line up with its labels."""
        if not shuffle:
            order = np.arange(len(split))
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                yield pad_batch([split.x[j] for j in idx]), split.y[idx]
            return
        lengths = np.array([len(ids) for ids in split.x]) + rng.random(len(split))
        order = np.argsort(lengths)
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for c in rng.permutation(len(chunks)):
            idx = chunks[c]
            yield pad_batch([split.x[j] for j in idx]), split.y[idx]

    def example_input(self, batch: int, split: Split) -> np.ndarray:
        return pad_batch(split.x[:batch])

    def dynamic_axes(self) -> dict[int, str]:
        return {0: BATCH, 1: SEQUENCE}

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        self.model = NBLogisticRegression(self.nb_ratio)
        return self.model

    def make_optimizer(
        self, model: nn.Module, config: dict[str, Any], steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def loss_fn(self, config: dict[str, Any]) -> nn.Module:
        return RegularisedLoss(self, config["l2"])

    def preprocessing(self) -> TextPreprocessing:
        return TextPreprocessing(tokenizer_file=TOKENIZER_FILE, max_chars=MAX_CHARS)

    def write_extra_files(self, out_dir: Path) -> list[str]:
        self.tokenizer.save(out_dir / TOKENIZER_FILE)
        return [TOKENIZER_FILE]


class RegularisedLoss(nn.Module):
    """Cross-entropy plus an L2 penalty on the coefficients (summed, not averaged)."""

    def __init__(self, task: ImdbTask, strength: float) -> None:
        super().__init__()
        self.task, self.strength = task, strength
        self.ce = nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model = self.task.model
        return self.ce(logits, y) + self.strength * model.weight.pow(2).sum()
