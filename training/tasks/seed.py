"""The classic tutorial models, trained with `--arch seed` as baselines for the defaults: what a
reader would write first after the Keras / TensorFlow tutorials. Each reuses its task's data,
splits and graph input, and goes through the same loop, calibration, export and evaluation;
only the network and a plain recipe (Adam, no augmentation, few epochs) differ. Their summary is
recorded on the default card (`python -m training baseline <task>`), so a user sees what the
default buys in accuracy, calibration, size and speed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.card import ModelCard
from app.tokenizer import PAD_ID, Tokenizer
from training.data import Dataset, Split, speech
from training.tasks.base import Task
from training.tasks.cifar10 import Cifar10Task
from training.tasks.imdb import ImdbTask
from training.tasks.mnist import MnistTask
from training.tasks.speech import LogMel, SpeechTask

ARCHS = ("default", "seed")


class SeedRecipe(Task):
    """Adam at a constant rate, plain cross-entropy, no augmentation: the tutorials' recipe.
    Listed first among a seed task's bases, so these methods win over the default task's."""

    arch: ClassVar[str] = "seed"

    def make_optimizer(
        self, model: nn.Module, config: dict[str, Any], steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)

    def loss_fn(self, config: dict[str, Any]) -> nn.Module:
        return nn.CrossEntropyLoss()

    def corrupt(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return x

    def augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """No weight averaging: the tutorials have none."""

    def calibration_split(self, val: Split) -> Split:
        return val

    def robustness_splits(self, test: Split) -> dict[str, Split]:
        """The baseline's card keeps the tutorial's figures; the default's card carries the
        robustness metrics, where they compare versions."""
        return {}


class KerasMnistNet(nn.Module):
    """keras.io "Simple MNIST convnet": conv 32, pool, conv 64, pool, dropout 0.5, dense 10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(64 * 5 * 5, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MnistSeedTask(SeedRecipe, MnistTask):
    description = "Baseline: the Keras 'simple MNIST convnet' (2 conv layers), no augmentation."
    defaults: ClassVar[dict[str, Any]] = {
        "arch": "seed",
        "seed": 0,
        "epochs": 2,
        "batch_size": 128,
        "lr": 1e-3,
    }

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        return KerasMnistNet()


class TfCifarNet(nn.Module):
    """tensorflow.org "Convolutional Neural Network (CNN)": conv 32/64/64, dense 64, dense 10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Cifar10SeedTask(SeedRecipe, Cifar10Task):
    description = "Baseline: the TensorFlow tutorial CNN (3 conv layers, dense 64), no TTA."
    defaults: ClassVar[dict[str, Any]] = {
        "arch": "seed",
        "seed": 0,
        "epochs": 5,
        "batch_size": 64,
        "lr": 1e-3,
    }

    def prepare(self, dataset: Dataset, config: dict[str, Any]) -> None:
        self.config = config  # no whitening sample: the tutorial net has no whitening layer

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        return TfCifarNet()


class LstmSentimentNet(nn.Module):
    """Keras "imdb_lstm": embedding + LSTM + dense. The answer is read at the last real token,
    so the trailing padding the server adds to batch texts does not change it."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(token_ids))
        last = (token_ids != PAD_ID).sum(dim=1).clamp(min=1) - 1
        index = last.view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return self.head(torch.gather(out, 1, index).squeeze(1))


class ImdbSeedTask(SeedRecipe, ImdbTask):
    description = (
        "Baseline: Keras-style embedding + LSTM over the first 200 known words (vocabulary of "
        "the 20,000 most frequent)."
    )
    defaults: ClassVar[dict[str, Any]] = {
        "arch": "seed",
        "seed": 0,
        "epochs": 2,
        "batch_size": 32,
        "lr": 1e-3,
        "max_vocab": 20_000,
        "max_ids": 200,
        "min_docs": 1,
        "embed_dim": 128,
        "hidden": 64,
    }

    def prepare(self, dataset: Dataset, config: dict[str, Any]) -> None:
        self.config = config
        self.tokenizer = Tokenizer.fit(
            dataset.train.x, 1, config["min_docs"], config["max_vocab"], config["max_ids"], True
        )
        for split in (dataset.train, dataset.val, dataset.test):
            split.x = [self.tokenizer.encode(t) for t in split.x]

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        return LstmSentimentNet(self.tokenizer.vocab_size, config["embed_dim"], config["hidden"])


class TfAudioNet(nn.Module):
    """tensorflow.org "Simple audio recognition": the spectrogram resized to 32x32, conv 32/64,
    pool, dropout, dense 128, dropout, dense. Our log-mel front end stays in the graph."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.frontend = LogMel()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(64 * 14 * 14, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.frontend(wave), size=(32, 32), mode="bilinear", align_corners=False)
        return self.net(x)


class SpeechSeedTask(SeedRecipe, SpeechTask):
    description = "Baseline: the TensorFlow 'simple audio recognition' CNN on log-mel, 32x32."
    defaults: ClassVar[dict[str, Any]] = {
        "arch": "seed",
        "seed": 0,
        "epochs": 10,
        "batch_size": 64,
        "lr": 1e-3,
    }

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        model = TfAudioNet(len(speech.LABELS))
        model.frontend.mean.fill_(self.stats[0])
        model.frontend.std.fill_(self.stats[1])
        return model


SEED_TASKS: dict[str, type[Task]] = {
    "mnist": MnistSeedTask,
    "cifar10": Cifar10SeedTask,
    "imdb": ImdbSeedTask,
    "speech": SpeechSeedTask,
}


def is_baseline(card: ModelCard) -> bool:
    return card.training.config.get("arch") == "seed"
