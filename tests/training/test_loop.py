"""The seeds' teaching examples, kept as fast tests of the training loop: a numpy two-layer
net learning XOR by backprop (its gradients must equal autograd's, so the loop's loss is the
textbook one), and a small PyTorch MLP trained on XOR through `training.loop.train`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from training.data import Split
from training.loop import train
from training.tasks.base import Task

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0], dtype=np.int64)


def numpy_xor_net(steps: int, seed: int = 0) -> tuple[float, dict[str, np.ndarray]]:
    """Two-layer tanh net, softmax cross-entropy, plain gradient descent, backprop by hand."""
    rng = np.random.default_rng(seed)
    params = {"w1": rng.normal(0, 1, (2, 8)), "b1": np.zeros(8),
              "w2": rng.normal(0, 1, (8, 2)), "b2": np.zeros(2)}  # fmt: skip
    for _ in range(steps):
        grads, loss = numpy_backprop(params, XOR_X.astype(np.float64), XOR_Y)
        for k in params:
            params[k] -= 0.5 * grads[k]
    return loss, params


def numpy_backprop(
    params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[dict[str, np.ndarray], float]:
    h = np.tanh(x @ params["w1"] + params["b1"])
    z = h @ params["w2"] + params["b2"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(len(y)), y]).mean())
    dz = p.copy()
    dz[np.arange(len(y)), y] -= 1
    dz /= len(y)
    dh = dz @ params["w2"].T * (1 - h**2)
    return {"w2": h.T @ dz, "b2": dz.sum(0), "w1": x.T @ dh, "b1": dh.sum(0)}, loss


def test_numpy_backprop_learns_xor_and_matches_autograd() -> None:
    loss, params = numpy_xor_net(steps=2000)
    h = np.tanh(XOR_X @ params["w1"] + params["b1"])
    assert ((h @ params["w2"] + params["b2"]).argmax(axis=1) == XOR_Y).all()
    assert loss < 0.05

    grads, _ = numpy_backprop(params, XOR_X.astype(np.float64), XOR_Y)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    logits = torch.tanh(torch.tensor(XOR_X, dtype=torch.float64) @ t["w1"] + t["b1"]) @ t["w2"]
    nn.functional.cross_entropy(logits + t["b2"], torch.tensor(XOR_Y)).backward()
    for k in params:
        np.testing.assert_allclose(grads[k], t[k].grad.numpy(), rtol=1e-9, atol=1e-12)


class XorTask(Task):
    name = "xor"
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "epochs": 60,
        "batch_size": 64,
        "lr": 0.5,
        "weight_decay": 0.0,
        "warmup": 0.1,
    }

    def build_model(self, config: dict[str, Any]) -> nn.Module:
        return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))


def xor_split(copies: int, noise: float, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    x = np.repeat(XOR_X, copies, axis=0) + rng.normal(0, noise, (4 * copies, 2)).astype(np.float32)
    return Split(x.astype(np.float32), np.repeat(XOR_Y, copies), "xor")


def test_loop_trains_a_small_mlp_on_xor_and_keeps_the_best_epoch() -> None:
    task = XorTask()
    result = train(
        task,
        task.build_model(task.defaults),
        xor_split(64, 0.1, 0),
        xor_split(16, 0.1, 1),
        task.defaults,
        torch.device("cpu"),
        progress=False,
    )
    assert result.best_val_accuracy == 1.0
    assert len(result.history) == task.defaults["epochs"]
    assert result.history[result.best_epoch - 1]["val_accuracy"] == result.best_val_accuracy
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 4


def test_checkpoint_resume_continues_where_it_stopped(tmp_path) -> None:
    task = XorTask()
    config = {**task.defaults, "epochs": 6}
    ckpt = tmp_path / "ckpt.pt"
    train_split, val_split = xor_split(32, 0.1, 0), xor_split(8, 0.1, 1)
    full = train(
        task,
        task.build_model(config),
        train_split,
        val_split,
        config,
        torch.device("cpu"),
        checkpoint=ckpt,
        progress=False,
    )
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 5 and len(state["history"]) == 6
    # a resumed run at the last checkpoint trains no further epochs and keeps the history
    resumed = train(
        task,
        task.build_model(config),
        train_split,
        val_split,
        config,
        torch.device("cpu"),
        checkpoint=ckpt,
        resume=True,
        progress=False,
    )
    assert resumed.history == full.history
    assert resumed.best_epoch == full.best_epoch
