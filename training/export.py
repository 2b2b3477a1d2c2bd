"""Export to ONNX with the temperature folded in, then check the file: onnx.checker, the input
and output shapes really dynamic (exporters have frozen them silently), and parity with torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from app.card import BATCH, TensorSpec

OPSET = 18
OUTPUT_NAME = "probabilities"
PARITY_BATCHES = (1, 2, 7, 64)
PARITY_TOLERANCE = 1e-4


class Calibrated(nn.Module):
    """softmax(logits / T): the graph answers calibrated probabilities."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x) * self.inv_temperature, dim=-1)


def export_onnx(
    module: nn.Module,
    example: np.ndarray,
    input_spec: TensorSpec,
    dynamic_axes: dict[int, str],
    path: Path,
) -> None:
    if example.shape[0] < 2:
        raise ValueError("export with a batch of at least 2, or the batch dimension may freeze")
    module.eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(example),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_spec.name],
            output_names=[OUTPUT_NAME],
            dynamic_axes={input_spec.name: dynamic_axes, OUTPUT_NAME: {0: BATCH}},
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    check_dynamic_shapes(model, input_spec)


def output_spec(num_classes: int) -> TensorSpec:
    return TensorSpec(name=OUTPUT_NAME, dtype="float32", shape=[BATCH, num_classes])


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def check_dynamic_shapes(model: onnx.ModelProto, input_spec: TensorSpec) -> None:
    """The exported input must carry the card's symbolic dimensions, not the example's sizes."""
    graph_input = next(i for i in model.graph.input if i.name == input_spec.name)
    dims = _dims(graph_input)
    if len(dims) != len(input_spec.shape):
        raise ValueError(f"exported input rank {dims} != card {input_spec.shape}")
    for got, want in zip(dims, input_spec.shape, strict=True):
        if isinstance(want, str) and not isinstance(got, str):
            raise ValueError(f"exported input froze dimension {want!r} to {got}: {dims}")
        if isinstance(want, int) and got != want:
            raise ValueError(f"exported input has {dims}, card says {input_spec.shape}")
    out_dims = _dims(model.graph.output[0])
    if not isinstance(out_dims[0], str):
        raise ValueError(f"exported output froze the batch dimension: {out_dims}")


def cpu_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def parity(module: nn.Module, path: Path, inputs: list[np.ndarray]) -> float:
    """Largest absolute difference between torch and ONNX Runtime outputs over the inputs."""
    module.eval().cpu()
    session = cpu_session(path)
    name = session.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        expected = module(torch.from_numpy(x)).numpy()
        got = session.run(None, {name: x})[0]
        if got.shape != expected.shape:
            raise ValueError(f"ONNX output shape {got.shape} != torch {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst
