"""ONNX Runtime sessions: provider choice, thread settings, signature checks, batch buckets.

Provider policy (`SMS_EXECUTION_PROVIDER`):
  * `cpu`  — CPU only.
  * `auto` — ask for CUDA when this onnxruntime build offers it, then believe only
    `session.get_providers()`: ONNX Runtime silently falls back to the CPU when the CUDA
    libraries are missing, so asking is not the same as getting.
  * `cuda` — as `auto`, but a session without an active CUDA provider is a start-up error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.card import BATCH, ModelCard, TensorSpec
from app.pipelines.base import batch_buckets, bucket_for

log = logging.getLogger("app.runtime")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(int64)": "int64"}


class SessionError(RuntimeError):
    """The ONNX file cannot be served as its card describes."""


def _session_options(intra_op_threads: int, inter_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning worker threads would steal the core the event loop needs between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _requested_providers(policy: str) -> list[str]:
    if policy == "cpu":
        return [CPU]
    available = ort.get_available_providers()
    if CUDA in available:
        return [CUDA, CPU]
    if policy == "cuda":
        raise SessionError(
            f"SMS_EXECUTION_PROVIDER=cuda but this onnxruntime build offers only {available}; "
            "install the [gpu] extra"
        )
    return [CPU]


class ModelSession:
    """One ONNX Runtime session plus the facts the server reports about it."""

    def __init__(
        self,
        path: Path,
        *,
        policy: str,
        intra_op_threads: int,
        inter_op_threads: int,
        max_batch_size: int,
    ) -> None:
        requested = _requested_providers(policy)
        options = _session_options(intra_op_threads, inter_op_threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=requested)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            if policy != "auto" or CUDA not in requested:
                raise SessionError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
            # Some builds raise instead of falling back when the CUDA libraries are broken.
            log.warning("%s: the CUDA provider failed (%s); trying the CPU", path, exc)
            requested = [CPU]
            try:
                self.session = ort.InferenceSession(str(path), options, providers=requested)
            except Exception as cpu_exc:
                raise SessionError(f"{path}: ONNX Runtime cannot load it: {cpu_exc}") from exc
        self.providers: list[str] = self.session.get_providers()
        if CUDA in requested and CUDA not in self.providers:
            if policy == "cuda":
                raise SessionError(
                    f"{path}: SMS_EXECUTION_PROVIDER=cuda but the CUDA provider is not active "
                    f"(session providers: {self.providers}); check the CUDA/cuDNN libraries"
                )
            log.warning("%s: CUDA provider requested but not active; running on the CPU", path)
        self.on_gpu = CUDA in self.providers
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.buckets = batch_buckets(max_batch_size)
        # On CUDA every new input shape costs a kernel/algorithm search, so batches are padded to
        # the warmed-up bucket sizes. The CPU provider has no per-shape cost: padding would only
        # waste compute there.
        self.pad_to_buckets = self.on_gpu
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_name = self.output_names[0]

    def check_signature(self, card: ModelCard) -> None:
        """The graph's inputs and outputs must be what the card says, batch dimension dynamic."""
        _check_tensors("input", self.session.get_inputs(), card.inputs)
        _check_tensors("output", self.session.get_outputs(), card.outputs)
        classes = card.outputs[0].shape[-1]
        if classes != len(card.labels):
            raise SessionError(
                f"first output {card.outputs[0].name} has {classes} classes but the card lists "
                f"{len(card.labels)} labels"
            )

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Run one batch and return the first output (class probabilities), one row per item."""
        (probabilities,) = self._run_padded(feed, [self.output_name])
        return probabilities

    def run_scored(
        self, feed: dict[str, np.ndarray], score_output: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """`run`, plus the graph output `score_output` (one value per item)."""
        probabilities, scores = self._run_padded(feed, [self.output_name, score_output])
        return probabilities, scores

    def _run_padded(self, feed: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """The named outputs of one batch, one row per item; on CUDA the batch is padded to
        its bucket first and the padding rows dropped again."""
        rows = next(iter(feed.values())).shape[0]
        if self.pad_to_buckets:
            target = bucket_for(rows, self.buckets)
            if target > rows:
                feed = {name: _pad_rows(array, target) for name, array in feed.items()}
        return [output[:rows] for output in self.session.run(outputs, feed)]

    def run_all(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch and return every graph output by name (for clients that bring their
        own tensors; not padded to buckets)."""
        outputs = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, outputs, strict=True))


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    padding = [(0, rows - array.shape[0])] + [(0, 0)] * (array.ndim - 1)
    return np.pad(array, padding)


def _check_tensors(kind: str, actual: Sequence[ort.NodeArg], declared: list[TensorSpec]) -> None:
    actual_by_name = {arg.name: arg for arg in actual}
    if [a.name for a in actual][: len(declared)] != [d.name for d in declared]:
        raise SessionError(
            f"graph {kind}s are {[a.name for a in actual]} but the card declares "
            f"{[d.name for d in declared]}"
        )
    for spec in declared:
        arg = actual_by_name[spec.name]
        dtype = _ORT_DTYPES.get(arg.type, arg.type)
        if dtype != spec.dtype:
            raise SessionError(f"{kind} {spec.name}: graph dtype {dtype}, card says {spec.dtype}")
        if not spec.shape or spec.shape[0] != BATCH:
            raise SessionError(
                f"{kind} {spec.name}: card shape {spec.shape} must start with 'batch'"
            )
        if len(arg.shape) != len(spec.shape):
            raise SessionError(
                f"{kind} {spec.name}: graph shape {arg.shape}, card says {spec.shape}"
            )
        for axis, (got, want) in enumerate(zip(arg.shape, spec.shape, strict=True)):
            got_is_fixed = isinstance(got, int)
            if isinstance(want, int) and (not got_is_fixed or got != want):
                raise SessionError(
                    f"{kind} {spec.name}: axis {axis} is {got} in the graph, card says {want} "
                    f"(graph shape {arg.shape}, card {spec.shape})"
                )
            if isinstance(want, str) and got_is_fixed:
                raise SessionError(
                    f"{kind} {spec.name}: axis {axis} is fixed at {got} in the graph but the card "
                    f"says it is dynamic ({want!r}); export with a dynamic {want} axis"
                )
