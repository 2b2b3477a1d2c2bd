"""The digit ensemble: members learn on their own losses, the graph answers their mean, and the
OOD score's feature tap sees every member."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from training.export import Calibrated, cpu_session, export_onnx, parity
from training.ood_graph import find_taps, with_outputs
from training.tasks.mnist import DigitEnsemble, MnistTask

WIDTHS = (8, 16, 24)


def trained_a_little(members: int) -> DigitEnsemble:
    """Different members, and BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    model = DigitEnsemble(members, WIDTHS, dropout=0.0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 28, 28))
    return model.eval()


def test_the_ensemble_answers_the_mean_of_its_members_logits() -> None:
    model = trained_a_little(3)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        members = torch.stack([member(x) for member in model.members])
        got = model(x)
    assert not torch.allclose(members[0], members[1], atol=1e-3)
    torch.testing.assert_close(got, members.mean(dim=0), atol=1e-5, rtol=1e-5)


def test_each_member_learns_from_its_own_loss() -> None:
    task = MnistTask()
    config = {**task.defaults, "members": 2, "widths": list(WIDTHS), "dropout": 0.0}
    model = task.build_model(config).train()
    loss_fn = task.loss_fn(config)
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 5])
    loss = loss_fn(model(x), y)
    loss.backward()
    for member in model.members:
        alone = torch.autograd.grad(F.cross_entropy(member(x), y), member.head[-1].weight)[0]
        # each member's gradient is that of its own run: not divided by the number of members
        # (which would shrink its learning rate against the weight decay), and not the gradient
        # of the averaged logits (one jointly fitted model instead of independent members)
        torch.testing.assert_close(member.head[-1].weight.grad, alone)


def test_the_exported_ensemble_taps_every_members_features(tmp_path: Path) -> None:
    model = Calibrated(trained_a_little(3), temperature=1.3).eval()
    path = tmp_path / "model.onnx"
    example = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    export_onnx(model, example, MnistTask().input_spec(), {0: "batch"}, path)
    assert parity(model, path, [example[:1], example]) < 1e-4

    graph = onnx.load(str(path))
    taps = find_taps(graph)
    tapped = tmp_path / "tapped.onnx"
    onnx.save(with_outputs(graph, [taps.features]), str(tapped))
    features = cpu_session(tapped).run([taps.features], {taps.input: example})[0]
    assert features.shape == (4, 3 * WIDTHS[-1])
