"""One served version of a model: its card, pipeline, ONNX Runtime sessions and batcher, built
and warmed up together (in a worker thread, while the previous version keeps serving). Nothing
in a LoadedVersion is optional: a version that cannot be built never becomes one."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.card import ModelCard, sha256_of
from app.errors import ServiceError
from app.metrics import BatcherMetrics, Metrics
from app.pipelines import PIPELINES
from app.pipelines.base import CardMismatch, Pipeline, Scores, top_scores
from app.serving.batcher import Batcher
from app.serving.config import ServingSettings
from app.serving.ood import REASON as OOD_REASON
from app.serving.ood import is_out_of_distribution
from app.serving.repository import VersionSource
from app.serving.runtime import ModelSession, SessionError
from app.settings import Settings

log = logging.getLogger("app.serving")


class LoadFailed(RuntimeError):
    """A version could not be built; the message names the file and the reason."""


class LoadedVersion:
    """A ready version. `process` runs in a batch worker thread; each worker takes one of the
    version's sessions (one session per instance), so instances never share a session."""

    def __init__(
        self,
        source: VersionSource,
        card: ModelCard,
        pipeline: Pipeline,
        sessions: list[ModelSession],
        serving: ServingSettings,
        metrics: Metrics,
    ) -> None:
        self.name = source.name
        self.version = source.version
        self.directory = source.directory
        self.fingerprint = source.fingerprint
        self.card = card
        self.pipeline = pipeline
        self.sessions = sessions
        self.serving = serving
        self.classes = len(card.labels)
        self.ood = card.ood  # the out-of-distribution score the graph outputs, if it has one
        self.onnx_file = card.onnx_file  # the file its sessions run (fp32 or the int8 copy)
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0
        self._idle_sessions: queue.SimpleQueue[ModelSession] = queue.SimpleQueue()
        for session in sessions:
            self._idle_sessions.put(session)
        self.batcher: Batcher[Any, Scores] = Batcher(
            f"{self.name}/{self.version}",
            self.process,
            max_batch_size=serving.max_batch_size,
            max_delay_s=serving.max_delay_ms / 1000,
            max_queue_size=serving.max_queue_size,
            workers=len(sessions),
            metrics=BatcherMetrics(metrics, self.name, self.version),
        )
        # Graph inputs that clients preprocessed themselves (the Open Inference Protocol's
        # tensor way in) queue separately: they skip the pipeline and come back whole.
        self.tensor_batcher: Batcher[dict[str, np.ndarray], dict[str, np.ndarray]] = Batcher(
            f"{self.name}/{self.version}/tensors",
            self.process_tensors,
            max_batch_size=serving.max_batch_size,
            max_delay_s=serving.max_delay_ms / 1000,
            max_queue_size=serving.max_queue_size,
            workers=len(sessions),
            metrics=BatcherMetrics(metrics, self.name, self.version),
        )

    def process(self, raws: Sequence[Any]) -> list[Scores | ServiceError]:
        """Decode, batch, run and unbatch a whole batch (in a worker thread).

        An item that fails to decode gets its own error; the others still run. An error from
        the graph itself propagates: the batcher fails exactly this batch.
        """
        pipeline = self.pipeline
        decoded = pipeline.decode_all(raws)
        results: list[Scores | ServiceError | None] = [None] * len(raws)
        for position, error in decoded.errors.items():
            results[position] = error
        if decoded.arrays:
            session = self._idle_sessions.get()
            try:
                for members in pipeline.group(decoded.arrays):
                    feed = pipeline.collate([decoded.arrays[m] for m in members])
                    flagged = None
                    if self.ood is None:
                        probabilities = session.run(feed)
                    else:
                        probabilities, ood_scores = session.run_scored(feed, self.ood.output)
                        flagged = is_out_of_distribution(ood_scores, self.ood).tolist()
                    for row, (member, scores) in enumerate(
                        zip(members, top_scores(probabilities, self.classes), strict=True)
                    ):
                        position = decoded.positions[member]
                        reason = decoded.reasons.get(position)
                        if reason is None and flagged is not None and flagged[row]:
                            reason = OOD_REASON
                        if reason is not None:
                            scores = scores._replace(reason=reason)
                        results[position] = scores
            finally:
                self._idle_sessions.put(session)
        return results  # type: ignore[return-value]  # every slot is filled above

    def process_tensors(
        self, feeds: Sequence[dict[str, np.ndarray]]
    ) -> list[dict[str, np.ndarray]]:
        """Run client-made graph inputs (in a worker thread): feeds whose tensors agree in
        everything but the batch axis run together, and each gets its own rows of every graph
        output back."""
        groups: dict[tuple[object, ...], list[int]] = {}
        for index, feed in enumerate(feeds):
            key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(feed.items()))
            groups.setdefault(key, []).append(index)
        results: list[dict[str, np.ndarray]] = [{} for _ in feeds]
        session = self._idle_sessions.get()
        try:
            for members in groups.values():
                names = feeds[members[0]].keys()
                joined = {n: np.concatenate([feeds[m][n] for m in members]) for n in names}
                outputs = session.run_all(joined)
                start = 0
                for member in members:
                    rows = next(iter(feeds[member].values())).shape[0]
                    results[member] = {n: o[start : start + rows] for n, o in outputs.items()}
                    start += rows
        finally:
            self._idle_sessions.put(session)
        return results

    async def drain(self) -> None:
        """Stop taking work and let what is queued and running finish (a replaced or
        unloaded version leaves this way)."""
        await self.batcher.drain()
        await self.tensor_batcher.drain()

    async def close(self) -> None:
        await self.batcher.close()
        await self.tensor_batcher.close()

    def warm_up(self) -> None:
        """Every session at every batch size (and sequence length), then the whole decode
        path once at the largest batch: a version is ready only after this ran."""
        for session in self.sessions:
            for feed in self.pipeline.warmup_feeds(session.buckets):
                session.run(feed)
        results = self.process([self.pipeline.example()] * self.serving.max_batch_size)
        failures = [r for r in results if isinstance(r, ServiceError)]
        if failures:
            raise RuntimeError(f"warm-up example was rejected: {failures[0].message}")

    @property
    def precision(self) -> str:
        int8 = self.card.int8
        return "int8" if int8 is not None and self.onnx_file == int8.onnx_file else "fp32"

    def runtime_facts(self) -> dict[str, Any]:
        session = self.sessions[0]
        batcher = self.batcher
        return {
            "onnx_file": self.onnx_file,
            "precision": "int8"
            if self.card.int8 and self.onnx_file == self.card.int8.onnx_file
            else "fp32",
            "providers": session.providers,
            "threads": {
                "intra_op": session.intra_op_threads,
                "inter_op": session.inter_op_threads,
            },
            "instances": len(self.sessions),
            "batch_buckets": session.buckets,
            "pads_to_buckets": session.pad_to_buckets,
            "load_seconds": round(self.load_seconds, 4),
            "warmup_seconds": round(self.warmup_seconds, 4),
            "batching": {
                "max_batch_size": batcher.max_batch_size,
                "max_delay_ms": batcher.max_delay_s * 1000,
                "max_queue_size": batcher.max_queue_size,
                "workers": batcher.workers,
                "queue_depth": batcher.queue_depth,
                "measured_items_per_second": (
                    None if batcher.items_per_second is None else round(batcher.items_per_second, 4)
                ),
            },
        }


def load_version(
    source: VersionSource, serving: ServingSettings, settings: Settings, metrics: Metrics
) -> LoadedVersion:
    """Build and warm up one version (blocking: run it in a thread); LoadFailed says why not."""
    if source.problem is not None or source.card is None:
        raise LoadFailed(source.problem or f"{source.directory}: no card")
    card = source.card
    onnx_path = _served_onnx(source, serving)
    pipeline_class = PIPELINES.get(card.task)
    if pipeline_class is None:
        raise LoadFailed(f"{source.directory}: no pipeline serves task {card.task!r}")
    started = time.monotonic()
    try:
        sessions = [
            ModelSession(
                onnx_path,
                policy=serving.execution_provider,
                intra_op_threads=serving.intra_op_threads,
                inter_op_threads=serving.inter_op_threads,
                max_batch_size=serving.max_batch_size,
            )
            for _ in range(serving.instances)
        ]
        sessions[0].check_signature(card)
        pipeline = pipeline_class(card, source.directory, settings, sessions[0].pad_to_buckets)
    except (SessionError, CardMismatch, OSError, ValueError) as exc:
        reason = str(exc)
        if not reason.startswith(str(source.directory)):
            reason = f"{onnx_path}: {reason}"
        raise LoadFailed(reason) from None
    loaded = LoadedVersion(source, card, pipeline, sessions, serving, metrics)
    loaded.onnx_file = onnx_path.name
    loaded.load_seconds = time.monotonic() - started
    started = time.monotonic()
    try:
        loaded.warm_up()
    except Exception as exc:
        raise LoadFailed(f"{onnx_path}: warm-up failed: {exc}") from None
    loaded.warmup_seconds = time.monotonic() - started
    log.info(
        "model %s version %s (%s) loaded in %.2f s, warmed up in %.2f s at batch sizes %s on %s "
        "(%d instance%s)",
        source.name,
        source.version,
        onnx_path.name,
        loaded.load_seconds,
        loaded.warmup_seconds,
        sessions[0].buckets,
        sessions[0].providers[0],
        len(sessions),
        "" if len(sessions) == 1 else "s",
    )
    return loaded


def _served_onnx(source: VersionSource, serving: ServingSettings) -> Path:
    """The ONNX file this version serves under its precision, checked against the card's
    sha256 (the fp32 file was checked with the folder; an int8 copy is checked here)."""
    card = source.card
    assert card is not None
    if serving.precision == "int8" and card.int8 is None and not serving.precision_required:
        return source.onnx_path  # SMS_PRECISION=int8: int8 where there is a copy
    try:
        name, sha256 = card.serving_onnx(serving.precision)  # type: ignore[arg-type]
    except ValueError as exc:
        raise LoadFailed(f"{source.directory / 'config.json'}: precision int8, but {exc}") from None
    path = source.directory / name
    if path.name != card.onnx_file:
        if not path.is_file():
            raise LoadFailed(f"{path}: missing int8 ONNX file named by the card")
        actual = sha256_of(path)
        if actual != sha256:
            raise LoadFailed(
                f"{path}: sha256 {actual} does not match the card's int8 {sha256} "
                "(file changed or corrupt)"
            )
    return path
