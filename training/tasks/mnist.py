"""Handwritten digits: a small batch-normalised CNN trained on MNIST-format 28x28 images (white
digit on black) with affine augmentation (rotation, scale, shift, shear for tilted paper) and what
a photo leaves after the server's `centre_digit`: thinner and thicker strokes (pens), patchy
strokes (pencil) and a faint ramp of background (a shadow). The card reports accuracy on the
test digits drawn as thin-pen, thick-pen, pencil, shadowed and tilted photos and prepared by the
server's own code (training/robustness.py).

With `members` > 1 several such nets train side by side on the same batches, each on its own loss
(independent members, not one jointly fitted average), and the graph answers the mean of their
logits: a deep ensemble, which errs on fewer of the ambiguous digits than any one member."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from app.card import BATCH, ImagePreprocessing
from training import robustness
from training.data import Dataset, Split, mnist
from training.tasks.base import Task

MEAN, STD = 0.1307, 0.3081


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class DigitNet(nn.Module):
    def __init__(self, widths: tuple[int, int, int], dropout: float) -> None:
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            *conv_bn_relu(1, a),
            nn.MaxPool2d(2),
            *conv_bn_relu(a, b),
            *conv_bn_relu(b, b),
            nn.MaxPool2d(2),
            *conv_bn_relu(b, c),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - MEAN) / STD))


class DigitEnsemble(nn.Module):
    """Mean of the members' logits. In the graph it is one linear layer over the members'
    concatenated features (the heads side by side, divided by their number), so the OOD score's
    feature tap sees every member, not only the last."""

    def __init__(self, members: int, widths: tuple[int, int, int], dropout: float) -> None:
        super().__init__()
        self.members = nn.ModuleList(DigitNet(widths, dropout) for _ in range(members))
        self.member_logits: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.member_logits = [member(x) for member in self.members]
            return torch.stack(self.member_logits).mean(dim=0)
        x = (x - MEAN) / STD
        features = torch.cat([member.features(x) for member in self.members], dim=1)
        heads = [member.head[-1] for member in self.members]
        weight = torch.cat([head.weight for head in heads], dim=1) / len(heads)
        bias = torch.stack([head.bias for head in heads]).mean(dim=0)
        return F.linear(features, weight, bias)


class MemberLoss(nn.Module):
    """The sum of the members' own cross-entropies, so each member's gradient is exactly that of
    its own training run. (A mean divided every member's learning rate by their number while the
    weight decay stayed whole: three members at 99.51% on test against one net's 99.63%.)"""

    def __init__(self, model: DigitEnsemble, label_smoothing: float) -> None:
        super().__init__()
        self.model = model
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = [self.ce(member, y) for member in self.model.member_logits]
        return torch.stack(losses).sum()


class MnistTask(Task):
    name = "mnist"
    card_task = "image-classification"
    description = (
        "Handwritten digit 0-9 from a 28x28 grayscale image; the server turns any photo "
        "or scan of a digit into MNIST format (invert, crop, 20x20, centre of mass)."
    )
    input_name = "image"
    input_shape: ClassVar[list[int | str]] = [BATCH, 1, 28, 28]
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "epochs": 20,
        "members": 3,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "label_smoothing": 0.0,
        "widths": [32, 64, 128],
        "dropout": 0.2,
        "rotate_deg": 10,
        "scale": [0.9, 1.1],
        "shift_px": 2,
        "warmup": 0.15,
        "shear": 0.25,
        "pen_p": 0.3,
        "pencil_p": 0.15,
        "shadow_p": 0.1,
    }

    def load_data(self, data_dir: Path, download: bool, seed: int) -> Dataset:
        return mnist.load(data_dir, download)

    def prepare(self, dataset: Dataset, config: dict[str, Any]) -> None:
        self.config = config

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        widths, members = tuple(config["widths"]), config["members"]
        if members > 1:
            self.model = DigitEnsemble(members, widths, config["dropout"])
        else:
            self.model = DigitNet(widths, config["dropout"])
        return self.model.to(memory_format=torch.channels_last)

    def loss_fn(self, config: dict[str, Any]) -> nn.Module:
        if isinstance(self.model, DigitEnsemble):
            return MemberLoss(self.model, config["label_smoothing"])
        return super().loss_fn(config)

    def augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, b = self.config, x.shape[0]
        angle = (torch.rand(b, device=x.device) * 2 - 1) * math.radians(cfg["rotate_deg"])
        lo, hi = cfg["scale"]
        scale = lo + torch.rand(b, device=x.device) * (hi - lo)
        shift = (torch.rand(b, 2, device=x.device) * 2 - 1) * cfg["shift_px"] * 2 / x.shape[-1]
        shear = (torch.rand(b, device=x.device) * 2 - 1) * cfg["shear"]
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [
                torch.stack([cos, -sin + shear * cos, shift[:, 0]], 1),
                torch.stack([sin, cos + shear * sin, shift[:, 1]], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
        x = self._pens(x)
        return x.contiguous(memory_format=torch.channels_last), y

    def _pens(self, x: torch.Tensor) -> torch.Tensor:
        """Stroke width, pencil grain and shadow residue, each on its own share of the batch."""
        cfg, b, device = self.config, x.shape[0], x.device

        def chosen(p: float) -> torch.Tensor:
            return (torch.rand(b, 1, 1, 1, device=device) < p).float()

        thick = F.max_pool2d(x, 3, 1, 1)
        thin = -F.max_pool2d(-x, 2, 1, 0)
        thin = F.pad(thin, (0, 1, 0, 1))
        amount = torch.rand(b, 1, 1, 1, device=device)
        pen = chosen(cfg["pen_p"])
        widened = torch.where(
            amount < 0.5, x + 2 * amount * (thick - x), x + (2 * amount - 1) * (thin - x)
        )
        x = x + pen * (widened - x)
        grain = 1 - 0.6 * torch.rand_like(x)
        x = x + chosen(cfg["pencil_p"]) * (x * grain - x)
        angle = torch.rand(b, 1, 1, 1, device=device) * 2 * math.pi
        ramp = torch.linspace(-1, 1, x.shape[-1], device=device)
        shade = (
            torch.cos(angle) * ramp[None, None, None, :]
            + torch.sin(angle) * ramp[None, None, :, None]
        )
        residue = shade.clamp_min(0) * 0.3 * torch.rand(b, 1, 1, 1, device=device)
        x = torch.maximum(x, chosen(cfg["shadow_p"]) * residue)
        return x.clamp(0, 1)

    def robustness_splits(self, test: Split) -> dict[str, Split]:
        return {
            style: robustness.digit_photo_split(test, style) for style in robustness.DIGIT_STYLES
        }

    def preprocessing(self) -> ImagePreprocessing:
        return ImagePreprocessing(height=28, width=28, channels=1, digit_centering=True)
