"""`python -m training quantize <task>`: an int8 copy of a models/ entry, beside its model.onnx.

ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8 activations) calibrated on
the task's validation split, then measured like the fp32 graph: test accuracy with its interval,
ECE, parity with fp32 on the whole test split, and ms/item on one thread. The card gets an `int8`
entry; the server chooses between the two files from it (`ModelCard.serving_onnx`).

Only the matrix products (Conv, MatMul, Gemm) are quantised: they are the compute. The final
temperature Mul + Softmax stay fp32 (they make the probabilities the card's calibration is about),
and per task the nodes that lose accuracy when quantised are left out (see `EXCLUDE`) and the
ops worth quantising besides are added (see `EXTRA_OPS`). The out-of-distribution score's branch
stays fp32 and reads fp32 features (`read_fp32_activations`); the card's int8 entry gives the
share the int8 copy flags on the test split and on each OOD report set, since the server acts on
that copy's score.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from app.card import (
    CalibrationSet,
    Metric,
    ModelCard,
    QuantizedVariant,
    QuantParity,
    QuantSpeed,
    latest_version_dir,
    sha256_of,
)
from training import calibrate, ood_graph
from training.data import Split
from training.measure import bootstrap_interval
from training.tasks.base import Task

INT8_FILE = "model.int8.onnx"
OP_TYPES = ["Conv", "MatMul", "Gemm"]
# Node-name prefixes kept in fp32, per task (measured, see docs/benchmarks.md):
# speech: the log-mel front end (a DFT as a Conv, the mel MatMul, then a log). Quantised with
#   the rest, test accuracy fell from 94.1% to 44.6%: uint8 cannot hold a power spectrum's range
#   before the log. Kept in fp32: 94.3%, and still 2x faster than fp32 overall.
EXCLUDE: dict[str, list[str]] = {"speech": ["/model/frontend/"]}
# imdb is a bag of n-gram embeddings (Gather + ReduceSum): no Conv/MatMul/Gemm at all, so the
# only gain is size: the int8 embedding table makes the file 4x smaller at the same accuracy
# (91.91% -> 91.93%); the compute, a few microseconds per review, stays about the same.
EXTRA_OPS: dict[str, list[str]] = {"imdb": ["Gather"]}
CALIBRATION_SAMPLES = 1024
CALIBRATION_BATCH = 32
SPEED_BATCHES = (1, 32)


class SplitReader(CalibrationDataReader):
    """Feeds calibration batches in the graph's input format, as evaluation does."""

    def __init__(self, task: Task, split: Split, input_name: str, batch_size: int) -> None:
        self.input_name = input_name
        self._batches: Iterator[tuple[np.ndarray, np.ndarray]] = task.batches(
            split, batch_size, shuffle=False, rng=np.random.default_rng(0)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch[0]}


def sample(split: Split, n: int, seed: int = 0) -> Split:
    """`n` items drawn at random (in split order): splits may be sorted by class (speech is)."""
    if n >= len(split):
        return split
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    x = [split.x[i] for i in idx] if isinstance(split.x, list) else split.x[idx]
    groups = None if split.groups is None else split.groups[idx]
    return Split(x, split.y[idx], f"{split.source} (random {n}, seed {seed})", groups)


def excluded_nodes(model_path: Path, prefixes: list[str]) -> list[str]:
    """The nodes named by `prefixes`, and the out-of-distribution score's branch
    (training/ood_graph.py): every node the probabilities do not depend on. Its table lookups
    (Gather) stay quantised: an int8 table's range is the table's own."""
    model = onnx.load(str(model_path))
    branch = _score_branch(model)
    return [
        node.name
        for i, node in enumerate(model.graph.node)
        if node.name
        and (
            any(node.name.startswith(p) for p in prefixes)
            or (i in branch and node.op_type != "Gather")
        )
    ]


def _score_branch(model: onnx.ModelProto) -> set[int]:
    """Indexes of the nodes the first output (the probabilities) does not depend on."""
    producer = {out: node for node in model.graph.node for out in node.output}
    needed = ood_graph.tensor_ancestors(model.graph.output[0].name, producer)
    return {i for i, node in enumerate(model.graph.node) if not set(node.output) & needed}


def read_fp32_activations(path: Path) -> int:
    """Point the score branch of a QDQ graph at the fp32 tensors. The quantiser gives every
    consumer of a quantised tensor its DequantizeLinear(QuantizeLinear(x)), excluded nodes too,
    and that pair clips x to the range seen in calibration: on in-distribution data, so it
    flattens exactly the large features that flag an unfamiliar input (cifar10 version 3, int8:
    uniform noise flagged 84% instead of the fp32 graph's 100%). Returns the inputs rewired."""
    model = onnx.load(str(path))
    producer = {out: node for node in model.graph.node for out in node.output}
    rewired = 0
    for index in _score_branch(model):
        node = model.graph.node[index]
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":  # an activation, not a weight
                node.input[k] = q.input[0]
                rewired += 1
    if rewired:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return rewired


def quantize_file(
    fp32_path: Path,
    out_path: Path,
    reader: CalibrationDataReader,
    exclude_prefixes: list[str],
    op_types: list[str] = OP_TYPES,
) -> list[str]:
    """Pre-process (shape inference, fp32 graph fusions), then quantise; returns the nodes kept
    in fp32. Pre-processing runs first because quantize_static needs every tensor's shape."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        except TypeError:
            # ONNX Runtime's symbolic shape inference trips over some graphs (those with the
            # out-of-distribution score added by training/ood_graph.py); ONNX's own shape
            # inference is enough for them.
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        excluded = excluded_nodes(prepared, exclude_prefixes)
        quantize_static(
            str(prepared),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
        )
    read_fp32_activations(out_path)
    return excluded


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def probabilities(task: Task, path: Path, split: Split, batch_size: int = 256) -> np.ndarray:
    sess = session(path)
    name = sess.get_inputs()[0].name
    batches = task.batches(split, batch_size, shuffle=False, rng=np.random.default_rng(0))
    return np.concatenate([sess.run(None, {name: x})[0] for x, _ in batches])


def ms_per_item(path: Path, x: np.ndarray, seconds: float = 1.5) -> float:
    """The best of repeated single-thread runs on one fixed batch, per item. One thread: the
    per-core cost a batch worker pays. The best, not the median: on a shared machine the median
    measures the neighbours (it moved 3x between two runs here), the best moves little."""
    sess = session(path, threads=1)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3):
        sess.run(None, feed)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1000 * min(times) / len(x)


@dataclass
class Comparison:
    accuracy: float
    interval_95: tuple[float, float]
    ece: float
    agreement: float
    max_abs_difference: float


def compare(
    fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray, groups: np.ndarray | None
) -> Comparison:
    correct = int8.argmax(axis=1) == labels
    return Comparison(
        float(correct.mean()),
        bootstrap_interval(correct, groups),
        float(calibrate.expected_calibration_error(int8, labels)),
        float((int8.argmax(axis=1) == fp32.argmax(axis=1)).mean()),
        float(np.abs(int8 - fp32).max()),
    )


def speed_inputs(task: Task, split: Split) -> dict[int, np.ndarray]:
    return {b: task.example_input(b, split) for b in SPEED_BATCHES if b <= len(split)}


def quantize_model(
    task: Task,
    model_dir: Path,
    data_dir: Path,
    download: bool = False,
    calibration_samples: int = CALIBRATION_SAMPLES,
    exclude_prefixes: list[str] | None = None,
) -> QuantizedVariant:
    """Quantise `model_dir`'s model.onnx, measure it, write model.int8.onnx and the card."""
    card = ModelCard.load(model_dir)
    fp32_path = model_dir / card.onnx_file
    if sha256_of(fp32_path) != card.onnx_sha256:
        raise ValueError(f"{fp32_path} does not match the sha256 on its card")
    dataset = task.load_data(data_dir, download, int(card.training.seed))
    task.restore(model_dir, dataset)
    calibration = sample(dataset.val, calibration_samples)
    out_path = model_dir / INT8_FILE
    prefixes = EXCLUDE.get(task.name, []) if exclude_prefixes is None else exclude_prefixes
    reader = SplitReader(task, calibration, card.inputs[0].name, CALIBRATION_BATCH)
    op_types = [*OP_TYPES, *EXTRA_OPS.get(task.name, [])]
    excluded = quantize_file(fp32_path, out_path, reader, prefixes, op_types)

    test = dataset.test
    fp32_probs = probabilities(task, fp32_path, test)
    int8_probs = probabilities(task, out_path, test)
    result = compare(fp32_probs, int8_probs, test.y, test.groups)
    inputs = speed_inputs(task, test)
    speeds = [
        QuantSpeed(
            batch=b,
            threads=1,
            fp32_ms_per_item=round(ms_per_item(fp32_path, x), 4),
            int8_ms_per_item=round(ms_per_item(out_path, x), 4),
        )
        for b, x in inputs.items()
    ]
    variant = QuantizedVariant(
        onnx_file=INT8_FILE,
        onnx_sha256=sha256_of(out_path),
        size_bytes=out_path.stat().st_size,
        method="onnxruntime.quantization.quantize_static, QDQ, per-channel int8 weights, "
        "uint8 activations, MinMax calibration",
        quantized_op_types=op_types,
        excluded_nodes=excluded,
        calibration=CalibrationSet(
            split="validation", samples=len(calibration), source=calibration.source
        ),
        metrics=[
            Metric(
                name="accuracy",
                value=round(result.accuracy, 6),
                dataset=card.data.dataset,
                split="test",
                samples=len(test),
                interval_95=(round(result.interval_95[0], 6), round(result.interval_95[1], 6)),
            ),
            Metric(
                name="ece",
                value=round(result.ece, 6),
                dataset=card.data.dataset,
                split="test",
                samples=len(test),
            ),
        ],
        parity=QuantParity(
            split="test",
            samples=len(test),
            top1_agreement=round(result.agreement, 6),
            max_abs_probability_difference=round(result.max_abs_difference, 6),
        ),
        speed=speeds,
        onnxruntime=ort.__version__,
        machine=machine(),
    )
    if card.ood is not None:
        variant.metrics.extend(ood_metrics(card, model_dir, data_dir, out_path))
    card.model_copy(update={"int8": variant}).save(model_dir)
    return variant


def ood_metrics(card: ModelCard, model_dir: Path, data_dir: Path, int8_path: Path) -> list[Metric]:
    """The served int8 file's out-of-distribution figures, beside the card's fp32 ones: the
    share of the test split flagged (`ood_abstain_rate`) and of each OOD report set
    (`ood_flagged_<kind>`)."""
    from training.ood import flagged_shares, load_task_data

    data = load_task_data(card.name, data_dir, int(card.training.seed), model_dir)
    metrics = []
    for name, (share, samples) in flagged_shares(card, int8_path, data).items():
        test = name == "test"
        metrics.append(
            Metric(
                name="ood_abstain_rate" if test else f"ood_flagged_{name}",
                value=round(share, 6),
                dataset=card.data.dataset if test else f"OOD report set: {name}",
                split="test",
                samples=samples,
            )
        )
        print(f"  int8 OOD score: {metrics[-1].name} {share:.4f} of {samples}")
    return metrics


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu


def report(card: ModelCard, variant: QuantizedVariant) -> str:
    fp32 = card.metric("accuracy")
    acc = variant.metric("accuracy")
    lines = [
        f"{card.name}: fp32 test accuracy {fp32.value:.4f} -> int8 {acc.value:.4f} "
        f"(95% {acc.interval_95[0]:.4f}-{acc.interval_95[1]:.4f}), "
        f"ECE {card.metric('ece').value:.4f} -> {variant.metric('ece').value:.4f}",
        f"  parity on {variant.parity.samples} test items: top-1 agreement "
        f"{variant.parity.top1_agreement:.4f}, max |p_int8 - p_fp32| "
        f"{variant.parity.max_abs_probability_difference:.4f}",
        f"  size {variant.size_bytes:,} bytes; excluded {len(variant.excluded_nodes)} nodes",
        *(
            f"  batch {s.batch:>2}, 1 thread: fp32 {s.fp32_ms_per_item:.3f} ms/item, "
            f"int8 {s.int8_ms_per_item:.3f} ms/item"
            for s in variant.speed
        ),
        f"  serves {card.model_copy(update={'int8': variant}).serving_onnx('auto')[0]} (auto)",
    ]
    return "\n".join(lines)


def quantize(task: Task, model_dir: Path, data_dir: Path, download: bool = False) -> int:
    model_dir = latest_version_dir(model_dir.parent, model_dir.name)
    print(f"quantising {model_dir}")
    variant = quantize_model(task, model_dir, data_dir, download)
    print(report(ModelCard.load(model_dir), variant))
    return 0
