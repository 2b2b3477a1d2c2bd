"""CIFAR-10 objects, after Keller Jordan's airbench94 (arXiv 2404.00498): a frozen whitening
convolution fitted to the data, three conv groups of widths 64/256/256 with BatchNorm whose
scales are fixed, identity (Dirac) initialisation of the convolutions, label smoothing 0.2, Nesterov
SGD with a warm-up/warm-down schedule and Lookahead weight averaging, flip and 2-pixel translation.
airbench94's test-time augmentation (the mirror image and one-pixel shifts: six views) lives
inside the ONNX graph.

Users send photos, not CIFAR's own pixels, so a share of the training images is shown as the
server would see one: JPEG at quality 30-95 and/or drawn at 20-128 px and scaled back
(training/robustness.py); the card reports accuracy on the test images as JPEG quality 75 and as
enlarged JPEG photos beside the clean figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.card import BATCH, ImagePreprocessing
from training import robustness
from training.data import Dataset, Split, cifar10
from training.tasks.base import Task

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def conv_bn(c_in: int, c_out: int, momentum: float) -> list[nn.Module]:
    bn = nn.BatchNorm2d(c_out, momentum=momentum, eps=1e-12)
    bn.weight.requires_grad = False  # airbench: BN scales fixed at 1, only the shifts learn
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), bn]


class ConvGroup(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, momentum: float) -> None:
        conv1, bn1 = conv_bn(c_in, c_out, momentum)
        conv2, bn2 = conv_bn(c_out, c_out, momentum)
        super().__init__(conv1, nn.MaxPool2d(2), bn1, nn.GELU(), conv2, bn2, nn.GELU())


class AirNet(nn.Module):
    def __init__(self, widths: tuple[int, int, int], bn_momentum: float, scale: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.whiten = nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        self.groups = nn.Sequential(
            ConvGroup(24, widths[0], bn_momentum),
            ConvGroup(widths[0], widths[1], bn_momentum),
            ConvGroup(widths[1], widths[2], bn_momentum),
        )
        self.head = nn.Linear(widths[2], 10, bias=False)
        self.scale = scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        x = (images - self.mean) / self.std
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 12).double()
        patches = patches - patches.mean(dim=0)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).view(12, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).float().flip(0))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.whiten((x - self.mean) / self.std))
        x = self.groups(x)
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.scale

    def mirrored(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.logits(x) + self.logits(torch.flip(x, dims=[3])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.logits(x)
        # airbench94's test-time augmentation, inside the graph: the image and its mirror (half
        # the weight), and both again moved one pixel up-left and one down-right (a quarter each)
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        height, width = x.shape[2], x.shape[3]
        return (
            0.5 * self.mirrored(x)
            + 0.25 * self.mirrored(padded[:, :, :height, :width])
            + 0.25 * self.mirrored(padded[:, :, 2:, 2:])
        )


class Cifar10Task(Task):
    name = "cifar10"
    card_task = "image-classification"
    description = (
        "CIFAR-10 object classes from a 32x32 RGB image (larger images are resized); "
        "airbench94-style CNN with its test-time augmentation (mirror and one-pixel shifts) "
        "in the graph."
    )
    input_name = "image"
    input_shape: ClassVar[list[int | str]] = [BATCH, 3, 32, 32]
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "epochs": 16,
        "batch_size": 1024,
        "lr": 1.5,
        "momentum": 0.85,
        # airbench's decay per step, wd = 0.0153 * 1024 / 7850 of the weights, goes to SGD as
        # weight_decay = wd / lr against a summed loss; against our mean loss (lr 1.5 = 11.5 /
        # 7850 * 1024) the same step is wd / 1.5. Version 3 had an extra factor 11.5 / 7850 here:
        # about 680x too little decay.
        "weight_decay": 0.0153 * 1024 / 7850 / 1.5,
        "bias_lr_scale": 64.0,
        "label_smoothing": 0.2,
        "widths": [64, 256, 256],
        "bn_momentum": 0.4,
        "scale": 1 / 9,
        "translate": 2,
        "warmup": 0.23,
        "final_lr_fraction": 0.07,
        "photo_p": 0.7,
        "lookahead_every": 5,
    }

    def load_data(self, data_dir: Path, download: bool, seed: int) -> Dataset:
        return cifar10.load(data_dir, download)

    def prepare(self, dataset: Dataset, config: dict[str, Any]) -> None:
        self.config = config
        self.whitening_sample = torch.from_numpy(dataset.train.x[:5000])

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        model = AirNet(tuple(config["widths"]), config["bn_momentum"], config["scale"])
        model.init_whitening(self.whitening_sample)
        with torch.no_grad():  # airbench: each conv starts as the identity on its first channels
            for conv in model.groups.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.dirac_(conv.weight[: conv.weight.shape[1]])
        self.averaged: dict[str, torch.Tensor] | None = None
        return model.to(memory_format=torch.channels_last)

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """airbench's Lookahead: every few steps pull the weights (and BN statistics) towards
        their running average, whose weight grows as (step / total)^3 over the run."""
        if step % self.config["lookahead_every"]:
            return
        decay = 0.95 ** self.config["lookahead_every"] * (step / total_steps) ** 3
        with torch.no_grad():
            state = model.state_dict()
            if self.averaged is None:
                self.averaged = {
                    k: v.detach().clone() for k, v in state.items() if v.is_floating_point()
                }
            for key, average in self.averaged.items():
                average.lerp_(state[key], 1.0 - decay)
                state[key].copy_(average)

    def corrupt(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return robustness.photo_augment(x, rng, self.config["photo_p"])

    def robustness_splits(self, test: Split) -> dict[str, Split]:
        return {
            "jpeg_q75": robustness.jpeg_split(test, 75),
            "enlarged_jpeg": robustness.enlarged_photo_split(test),
        }

    def make_optimizer(
        self, model: nn.Module, config: dict[str, Any], steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        params = [p for p in model.parameters() if p.requires_grad]
        weights = [p for p in params if p.ndim > 1]
        biases = [p for p in params if p.ndim <= 1]
        lr, wd, scale = config["lr"], config["weight_decay"], config["bias_lr_scale"]
        opt = torch.optim.SGD(
            [
                {"params": weights, "lr": lr, "weight_decay": wd},
                {"params": biases, "lr": lr * scale, "weight_decay": wd / scale},
            ],
            momentum=config["momentum"],
            nesterov=True,
        )
        warm = max(1, int(steps * config["warmup"]))
        final = config["final_lr_fraction"]

        def factor(step: int) -> float:
            if step < warm:
                return 0.2 + 0.8 * step / warm
            return 1.0 - (1.0 - final) * min(1.0, (step - warm) / max(1, steps - warm))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, pad = x.shape[0], self.config["translate"]
        flip = torch.rand(b, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], torch.flip(x, dims=[3]), x)
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
        ar = torch.arange(x.shape[2], device=x.device)
        rows = (dy[:, None] + ar[None, :])[:, None, :, None]
        cols = (dx[:, None] + ar[None, :])[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(3, device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
        return x.contiguous(memory_format=torch.channels_last), y

    def preprocessing(self) -> ImagePreprocessing:
        return ImagePreprocessing(height=32, width=32, channels=3)
