"""The shared training loop: minibatches, augmentation, a tqdm bar with loss and accuracy,
validation after every epoch, the best-on-validation weights kept, checkpoint and resume."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.data import Split
from training.tasks.base import Task


@dataclass
class TrainResult:
    model: nn.Module
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    duration_s: float = 0.0


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)


@torch.no_grad()
def predict_logits(
    task: Task, model: nn.Module, split: Split, device: torch.device, batch_size: int = 256
) -> np.ndarray:
    model.eval()
    out = [
        model(to_tensor(x, device)).float().cpu().numpy()
        for x, _ in task.batches(split, batch_size, shuffle=False, rng=np.random.default_rng(0))
    ]
    return np.concatenate(out)


def train(
    task: Task,
    model: nn.Module,
    train_split: Split,
    val_split: Split,
    config: dict[str, Any],
    device: torch.device,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    seed, epochs, batch_size = config["seed"], config["epochs"], config["batch_size"]
    torch.manual_seed(seed)
    steps_per_epoch = -(-len(train_split) // batch_size)
    model.to(device)
    optimizer, scheduler = task.make_optimizer(model, config, epochs * steps_per_epoch)
    loss_fn = task.loss_fn(config).to(device)  # class weights live on the device too
    start_epoch, best_acc, best_epoch, best_state = 0, -1.0, -1, None
    history: list[dict[str, float]] = []
    elapsed = 0.0

    if resume and checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_acc, best_epoch = (
            state["epoch"] + 1,
            state["best_acc"],
            state["best_epoch"],
        )
        best_state, history, elapsed = state["best_state"], state["history"], state["elapsed"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {checkpoint} after epoch {start_epoch}")

    for epoch in range(start_epoch, epochs):
        started = time.monotonic()
        rng = np.random.default_rng(seed * 1000 + epoch)
        model.train()
        seen, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(
            task.batches(train_split, batch_size, shuffle=True, rng=rng),
            total=steps_per_epoch,
            desc=f"{task.name} epoch {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
            mininterval=2.0,
        )
        for step, (x_np, y_np) in enumerate(bar, start=epoch * steps_per_epoch + 1):
            x_np = task.corrupt(x_np, rng)
            x, y = task.augment(to_tensor(x_np, device), to_tensor(y_np, device))
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            task.after_step(model, step, epochs * steps_per_epoch)
            n = len(y_np)
            seen += n
            loss_sum += float(loss.detach()) * n
            hard = y if y.ndim == 1 else y.argmax(dim=1)
            correct += int((logits.argmax(dim=1) == hard).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        val_logits = predict_logits(task, model, val_split, device)
        val_acc = float((val_logits.argmax(axis=1) == val_split.y).mean())
        elapsed += time.monotonic() - started
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": loss_sum / seen,
                "train_accuracy": correct / seen,
                "val_accuracy": val_acc,
                "seconds": time.monotonic() - started,
            }
        )
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        print(
            f"{task.name} epoch {epoch + 1}/{epochs}: loss {loss_sum / seen:.4f} "
            f"train acc {correct / seen:.4f} val acc {val_acc:.4f} "
            f"(best {best_acc:.4f} @ {best_epoch}) {history[-1]['seconds']:.0f}s",
            flush=True,
        )
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "best_acc": best_acc,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "history": history,
                    "elapsed": elapsed,
                    "torch_rng": torch.get_rng_state(),
                },
                checkpoint.with_suffix(".tmp"),
            )
            checkpoint.with_suffix(".tmp").replace(checkpoint)

    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, best_epoch, best_acc, history, elapsed)
