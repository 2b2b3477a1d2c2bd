"""Graph surgery for out-of-distribution scores, with `onnx` alone (no torch).

An exported model ends in `Softmax(logits · 1/T)`. We find the raw logits and the penultimate
features feeding the last linear layer, expose them to measure candidate scores, and then
append the chosen score as a second graph output, `ood_score` float32 [batch], leaving the
probabilities output (and every node computing it) untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OOD_OUTPUT = "ood_score"
_LINEAR = ("MatMul", "Gemm")


@dataclass(frozen=True)
class Taps:
    """Tensors inside the graph that the scores are computed from."""

    input: str
    probabilities: str
    logits: str  # before the temperature: the network's own logits
    features: str | None  # the last linear layer's input, [batch, D]; None if there is none


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def find_taps(model: onnx.ModelProto) -> Taps:
    """Locate the logits and features by structure, so any of our exported graphs works."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    constants = {i.name for i in graph.initializer} | {
        node.output[0] for node in graph.node if node.op_type == "Constant"
    }
    probabilities = graph.output[0].name
    softmax = producer.get(probabilities)
    if softmax is None or softmax.op_type != "Softmax":
        raise ValueError(f"output {probabilities!r} does not come from a Softmax")
    logits = softmax.input[0]
    scale = producer.get(logits)
    if scale is not None and scale.op_type == "Mul" and any(i in constants for i in scale.input):
        logits = next(i for i in scale.input if i not in constants)  # undo the temperature
    ancestors = tensor_ancestors(logits, producer)
    linear = [
        node
        for node in graph.node
        if node.op_type in _LINEAR and node.output[0] in ancestors and node.input[1] in constants
    ]
    features = linear[-1].input[0] if linear else None
    return Taps(graph.input[0].name, probabilities, logits, features)


def tensor_ancestors(name: str, producer: dict[str, onnx.NodeProto]) -> set[str]:
    """The tensor `name` and every tensor it is computed from."""
    seen, todo = set(), [name]
    while todo:
        tensor = todo.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        node = producer.get(tensor)
        if node is not None:
            todo.extend(node.input)
    return seen


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy that also outputs the named intermediate tensors (shapes left to the runtime)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    existing = {o.name for o in out.graph.output}
    for name in names:
        if name not in existing:
            out.graph.output.append(helper.make_empty_tensor_value_info(name))
    return out


# -- score subgraphs -------------------------------------------------------------------------


class _Builder:
    """Appends nodes and initializers under a unique prefix; knows the opset's reduce form."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.opset = _opset(model)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        full = f"ood/{name}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), full))
        return full

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: object) -> str:
        full = f"ood/{name}"
        self.nodes.append(helper.make_node(op_type, inputs, [full], name=full, **attrs))
        return full

    def reduce(
        self, op_type: str, x: str, name: str, keepdims: int = 0, axes: tuple[int, ...] = (1,)
    ) -> str:
        """Reduce over `axes`; axes is an input from opset 18 (13 for ReduceSum)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            axes_name = self.const(f"{name}_axes", np.array(axes, np.int64))
            return self.op(op_type, [x, axes_name], name, keepdims=keepdims)
        return self.op(op_type, [x], name, axes=list(axes), keepdims=keepdims)


def add_score(
    model: onnx.ModelProto, taps: Taps, method: str, params: dict[str, dict]
) -> onnx.ModelProto:
    """A copy of `model` with the second output `ood_score` (float32 [batch]).

    `method` is one score, or several joined by `+`: each is then scaled by its validation
    median and 99th percentile (`params[name]["scale"]`) and the largest scaled score is kept,
    so an item unlike the training data by either measure is flagged.
    """
    b = _Builder(model)
    parts = method.split("+")
    if len(parts) == 1:
        score = _score_nodes(b, taps, method, params.get(method, {}))
    else:
        scaled = []
        for name in parts:
            raw = _score_nodes(b, taps, name, params.get(name, {}))
            centre, spread = params[name]["scale"]
            shifted = b.op("Sub", [raw, b.const(f"{name}_centre", np.float32(centre))], f"{name}_c")
            spread_name = b.const(f"{name}_spread", np.float32(spread))
            scaled.append(b.op("Div", [shifted, spread_name], f"{name}_scaled"))
        score = b.op("Max", scaled, "max_scaled")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.node.extend(b.nodes)
    out.graph.node.append(helper.make_node("Identity", [score], [OOD_OUTPUT], name=OOD_OUTPUT))
    out.graph.initializer.extend(b.inits)
    batch = out.graph.output[0].type.tensor_type.shape.dim[0]
    dim = batch.dim_param or batch.dim_value
    out.graph.output.append(helper.make_tensor_value_info(OOD_OUTPUT, TensorProto.FLOAT, [dim]))
    onnx.checker.check_model(out, full_check=True)
    return out


def _score_nodes(b: _Builder, taps: Taps, method: str, params: dict[str, np.ndarray]) -> str:
    if method == "energy":
        return b.op("Neg", [b.reduce("ReduceLogSumExp", taps.logits, "logsumexp")], "energy")
    if method == "max_logit":
        return b.op("Neg", [b.reduce("ReduceMax", taps.logits, "max_logit")], "neg_max_logit")
    if method == "max_probability":
        top = b.reduce("ReduceMax", taps.probabilities, "max_probability")
        return b.op("Sub", [b.const("one", np.float32(1.0)), top], "one_minus_max")
    if method == "mahalanobis":
        if taps.features is None:
            raise ValueError("mahalanobis needs a features tensor")
        return _mahalanobis_nodes(b, taps.features, params)
    if method == "mahalanobis_l2":
        if taps.features is None:
            raise ValueError("mahalanobis_l2 needs a features tensor")
        unit = b.op("LpNormalization", [taps.features], "unit_features", axis=1, p=2)
        return _mahalanobis_nodes(b, unit, params, "maha_l2")
    if method in ("token_coverage", "phrase_coverage", "ngram_coverage"):
        return _token_coverage_nodes(b, taps.input, params, method)
    if method == "phrase_deficit":
        return _phrase_deficit_nodes(b, taps.input, params)
    if method == "image_stats":
        return _mahalanobis_nodes(b, _image_stats_nodes(b, taps.input), params, "stats_maha")
    raise ValueError(f"unknown OOD score {method!r}")


def _mahalanobis_nodes(
    b: _Builder, features: str, params: dict[str, np.ndarray], prefix: str = "maha"
) -> str:
    """min over classes of |(f − μ_c) W|², with W Wᵀ = Σ⁻¹: expanded as |fW|² − 2 fW·μ_cW + |μ_cW|²
    so the graph needs two MatMuls and no per-class loop."""
    whiten = params["whiten"].astype(np.float32)  # [D, D]
    means_w = (params["means"] @ params["whiten"]).astype(np.float32)  # [C, D]
    p = prefix
    g = b.op("MatMul", [features, b.const(f"{p}_whiten", whiten)], f"{p}_whitened")
    g2 = b.reduce("ReduceSum", b.op("Mul", [g, g], f"{p}_sq"), f"{p}_norm", keepdims=1)
    cross = b.op("MatMul", [g, b.const(f"{p}_means_t_x2", (2 * means_w.T).copy())], f"{p}_cross")
    m2 = b.const(f"{p}_means_norm", (means_w**2).sum(axis=1)[None, :].astype(np.float32))
    dist = b.op("Add", [b.op("Sub", [g2, cross], f"{p}_g2_minus_cross"), m2], f"{p}_distances")
    return b.reduce("ReduceMin", dist, f"{p}_min_distance")


STATS_EPS = 1e-4


def _image_stats_nodes(b: _Builder, image: str) -> str:
    """[batch, 2]: log pixel variance and log mean absolute neighbour difference (contrast and
    texture), the numbers that tell a photo from a plain picture or from noise. The variance is
    about each channel's own mean: a colour cast is not contrast (about the image's mean, noise
    around a strong colour looked as smooth as a photo; cifar10 answered such an image)."""
    mean = b.reduce("ReduceMean", image, "stats_channel_mean", keepdims=1, axes=(2, 3))
    centred = b.op("Sub", [image, mean], "stats_centred")
    squared = b.op("Mul", [centred, centred], "stats_sq")
    variance = b.reduce("ReduceMean", squared, "stats_var", axes=(1, 2, 3))
    eps = b.const("stats_eps", np.float32(STATS_EPS))
    diffs = []
    for axis in (2, 3):
        axes = b.const(f"stats_axis{axis}", np.array([axis], np.int64))
        one, zero = b.const(f"stats_one{axis}", np.array([1], np.int64)), None
        zero = b.const(f"stats_zero{axis}", np.array([0], np.int64))
        end = b.const(f"stats_end{axis}", np.array([np.iinfo(np.int64).max], np.int64))
        minus = b.const(f"stats_minus{axis}", np.array([-1], np.int64))
        later = b.op("Slice", [image, one, end, axes], f"stats_later{axis}")
        earlier = b.op("Slice", [image, zero, minus, axes], f"stats_earlier{axis}")
        step = b.op("Abs", [b.op("Sub", [later, earlier], f"stats_diff{axis}")], f"stats_abs{axis}")
        step_flat = b.op("Flatten", [step], f"stats_diff_flat{axis}", axis=1)
        diffs.append(b.reduce("ReduceMean", step_flat, f"stats_texture{axis}"))
    texture = b.op("Add", diffs, "stats_texture")
    columns = []
    for name, value in (("var", variance), ("texture", texture)):
        logged = b.op("Log", [b.op("Add", [value, eps], f"stats_{name}_eps")], f"stats_log_{name}")
        column_axis = b.const(f"stats_col_{name}", np.array([1], np.int64))
        columns.append(b.op("Unsqueeze", [logged, column_axis], f"stats_col_{name}_2d"))
    return b.op("Concat", columns, "stats_features", axis=1)


def image_stats_np(images: np.ndarray) -> np.ndarray:
    """The same features as `_image_stats_nodes`, in numpy."""
    x = images.astype(np.float64)
    variance = ((x - x.mean(axis=(2, 3), keepdims=True)) ** 2).mean(axis=(1, 2, 3))
    texture = np.abs(np.diff(x, axis=2)).reshape(len(x), -1).mean(axis=1) + np.abs(
        np.diff(x, axis=3)
    ).reshape(len(x), -1).mean(axis=1)
    return np.stack([np.log(variance + STATS_EPS), np.log(texture + STATS_EPS)], axis=1)


def _token_coverage_nodes(
    b: _Builder, ids: str, params: dict[str, np.ndarray], prefix: str = "coverage"
) -> str:
    """−log(1 + Σ_ids weight[id]): a text whose known n-grams carry little weight (few known
    words or phrases, none of the common ones) scores high. `weight` is a per-id table (0 for
    padding)."""
    table = b.const(f"{prefix}_weight", params["token_weight"].astype(np.float32))
    weights = b.op("Gather", [table, ids], f"{prefix}_weights", axis=0)
    mass = b.reduce("ReduceSum", weights, f"{prefix}_mass")
    one = b.const(f"{prefix}_one", np.float32(1.0))
    log_mass = b.op("Log", [b.op("Add", [mass, one], f"{prefix}_mass1")], f"{prefix}_log")
    return b.op("Neg", [log_mass], f"{prefix}_neg_log_mass")


def _phrase_deficit_nodes(b: _Builder, ids: str, params: dict[str, np.ndarray]) -> str:
    """log(1 + Σ word_weight[id]) − log(1 + Σ phrase_weight[id]) (training/ood.py)."""
    one = b.const("deficit_one", np.float32(1.0))
    logs = []
    for part in ("word", "phrase"):
        table = b.const(f"deficit_{part}_weight", params[f"{part}_weight"].astype(np.float32))
        weights = b.op("Gather", [table, ids], f"deficit_{part}_weights", axis=0)
        mass = b.reduce("ReduceSum", weights, f"deficit_{part}_mass")
        mass1 = b.op("Add", [mass, one], f"deficit_{part}_mass1")
        logs.append(b.op("Log", [mass1], f"deficit_{part}_log"))
    return b.op("Sub", logs, "deficit")


# -- the same scores in numpy, to choose among them ---------------------------------------------


def logsumexp(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    top = z.max(axis=1)
    return top + np.log(np.exp(z - top[:, None]).sum(axis=1))


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, ridge: float = 1e-3) -> dict:
    """Class means and the shared (tied) covariance, as a whitening matrix W with W Wᵀ = Σ⁻¹."""
    f = features.astype(np.float64)
    classes = np.unique(labels)
    means = np.stack([f[labels == c].mean(axis=0) for c in classes])
    centred = f - means[np.searchsorted(classes, labels)]
    cov = centred.T @ centred / len(f)
    cov += ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
    values, vectors = np.linalg.eigh(cov)
    whiten = vectors / np.sqrt(values)[None, :]
    return {"means": means, "whiten": whiten}


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (as ONNX LpNormalization): the direction of the features, which
    separates unfamiliar inputs better than their raw size on max-pooled features."""
    f = features.astype(np.float64)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def mahalanobis_np(features: np.ndarray, params: dict) -> np.ndarray:
    g = features.astype(np.float64) @ params["whiten"]
    m = params["means"] @ params["whiten"]
    d = (g**2).sum(axis=1)[:, None] - 2 * g @ m.T + (m**2).sum(axis=1)[None, :]
    return d.min(axis=1)
