"""What every task supplies to the shared loop, export, calibration and card steps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from app.card import BATCH, Preprocessing, TensorSpec
from training.data import Dataset, Split


class Task:
    name: ClassVar[str]
    card_task: ClassVar[str]
    description: ClassVar[str]
    input_name: ClassVar[str]
    input_dtype: ClassVar[str] = "float32"
    input_shape: ClassVar[list[int | str]]
    defaults: ClassVar[dict[str, Any]]

    # --- data -------------------------------------------------------------------------------
    def load_data(self, data_dir: Path, download: bool, seed: int) -> Dataset:
        raise NotImplementedError

    def prepare(self, dataset: Dataset, config: dict[str, Any]) -> None:
        """Fit anything derived from the training split (a vocabulary, feature statistics)."""

    def restore(self, model_dir: Path, dataset: Dataset) -> None:
        """Re-apply what `prepare` derived, from the files shipped in `model_dir`."""

    def batches(
        self, split: Split, batch_size: int, shuffle: bool, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Minibatches in the graph's input format."""
        order = rng.permutation(len(split)) if shuffle else np.arange(len(split))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield split.x[idx], split.y[idx]

    # --- model ------------------------------------------------------------------------------
    def build_model(self, config: dict[str, Any]) -> nn.Module:
        """A module mapping the graph input to logits."""
        raise NotImplementedError

    def corrupt(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training only, before the batch becomes a tensor: what needs numpy or Pillow (a JPEG
        round trip). Batch-level, on the CPU; `augment` does the rest on the device."""
        return x

    def augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after every optimiser step (1-based `step`), e.g. for weight averaging."""

    def calibration_split(self, val: Split) -> Split:
        """Where the temperature and the abstain threshold are fitted: the validation split, or
        more where users send inputs unlike it (imdb adds one-line reviews)."""
        return val

    def robustness_splits(self, test: Split) -> dict[str, Split]:
        """Deterministic variants of the test split as users send inputs (JPEG photos, phone
        audio, one-line reviews); each becomes an `accuracy_<name>` metric on the card
        (training/robustness.py)."""
        return {}

    def make_optimizer(
        self, model: nn.Module, config: dict[str, Any], steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        opt = torch.optim.SGD(
            [
                {"params": decay, "weight_decay": config["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config["lr"],
            momentum=0.9,
            nesterov=True,
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=config["lr"],
            total_steps=steps,
            pct_start=config.get("warmup", 0.15),
            anneal_strategy="linear" if config.get("linear_decay") else "cos",
        )
        return opt, sched

    def loss_fn(self, config: dict[str, Any]) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=config.get("label_smoothing", 0.0))

    # --- export / card ----------------------------------------------------------------------
    def example_input(self, batch: int, split: Split) -> np.ndarray:
        x, _ = next(self.batches(split, batch, shuffle=False, rng=np.random.default_rng(0)))
        return x

    def dynamic_axes(self) -> dict[int, str]:
        return {0: BATCH}

    def input_spec(self) -> TensorSpec:
        return TensorSpec(name=self.input_name, dtype=self.input_dtype, shape=self.input_shape)

    def preprocessing(self) -> Preprocessing:
        raise NotImplementedError

    def write_extra_files(self, out_dir: Path) -> list[str]:
        """Files besides model.onnx and card.json that the server needs (a tokenizer)."""
        return []
