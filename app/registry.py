"""The served models: each repository folder becomes a session, a modality pipeline and a
batcher, warmed up before it counts as ready. Broken folders stay listed with their reason."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.batcher import Batcher
from app.card import ModelCard
from app.errors import ModelNotFound, NotReady
from app.metrics import BatcherMetrics, Metrics
from app.modalities import MODALITIES
from app.modalities.base import CardMismatch, Modality
from app.repository import ModelSource, discover
from app.runtime import ModelSession, SessionError
from app.settings import Settings

log = logging.getLogger("app.registry")

Status = Literal["loading", "ready", "broken"]


@dataclass
class ServedModel:
    name: str
    directory: Path
    card: ModelCard | None
    status: Status = "loading"
    error: str | None = None
    session: ModelSession | None = None
    modality: Modality | None = None
    batcher: Batcher[Any, Any] | None = None
    load_seconds: float | None = None
    warmup_seconds: float | None = None

    def runtime_facts(self, settings: Settings) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "status": self.status,
            "error": self.error,
            "directory": str(self.directory),
            "load_seconds": _rounded(self.load_seconds),
            "warmup_seconds": _rounded(self.warmup_seconds),
        }
        if self.session is not None:
            facts["providers"] = self.session.providers
            facts["threads"] = {
                "intra_op": self.session.intra_op_threads,
                "inter_op": self.session.inter_op_threads,
            }
            facts["batch_buckets"] = self.session.buckets
            facts["pads_to_buckets"] = self.session.pad_to_buckets
        if self.batcher is not None:
            facts["batching"] = {
                "max_batch_size": self.batcher.max_batch_size,
                "max_delay_ms": self.batcher.max_delay_s * 1000,
                "max_queue_size": self.batcher.max_queue_size,
                "workers": self.batcher.workers,
                "queue_depth": self.batcher.queue_depth,
                "measured_items_per_second": _rounded(self.batcher.items_per_second),
            }
        return facts


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class ModelRegistry:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self.shutting_down = False

    # -- start-up --------------------------------------------------------------------------

    def load_all(self) -> None:
        """Discover, validate, load and warm up every model (blocking; run it in a thread)."""
        for source in discover(self.settings.models_dir):
            served = ServedModel(source.name, source.directory, source.card)
            self.models[source.name] = served
            self.metrics.model_ready.labels(source.name).set(0)
            if source.problem is not None:
                self._mark_broken(served, source.problem)
                continue
            self._load(served, source)

    def _load(self, served: ServedModel, source: ModelSource) -> None:
        card = source.card
        assert card is not None
        modality_class = MODALITIES.get(card.task)
        if modality_class is None:
            self._mark_broken(served, f"{source.directory}: no modality serves task {card.task!r}")
            return
        started = time.monotonic()
        try:
            session = ModelSession(
                source.onnx_path,
                policy=self.settings.execution_provider,
                intra_op_threads=self.settings.intra_op_threads,
                inter_op_threads=self.settings.inter_op_threads,
                max_batch_size=self.settings.max_batch_size,
            )
            session.check_signature(card)
            modality = modality_class(card, source.directory, session, self.settings)
        except (SessionError, CardMismatch, OSError, ValueError) as exc:
            reason = str(exc)
            if not reason.startswith(str(source.directory)):
                reason = f"{source.onnx_path}: {reason}"
            self._mark_broken(served, reason)
            return
        served.session, served.modality = session, modality
        served.load_seconds = time.monotonic() - started
        for provider in session.providers:
            self.metrics.model_provider.labels(served.name, provider).set(1)
        started = time.monotonic()
        try:
            modality.warm_up()
        except Exception as exc:
            self._mark_broken(served, f"{source.onnx_path}: warm-up failed: {exc}")
            return
        served.warmup_seconds = time.monotonic() - started
        log.info(
            "model %s %s loaded in %.2f s, warmed up in %.2f s at batch sizes %s on %s",
            served.name,
            card.version,
            served.load_seconds,
            served.warmup_seconds,
            session.buckets,
            session.providers[0],
        )

    def _mark_broken(self, served: ServedModel, reason: str) -> None:
        served.status, served.error = "broken", reason
        log.error("model %s is broken: %s", served.name, reason)

    def start_batchers(self) -> None:
        """Give every loaded model its batcher (in the event loop) and mark it ready."""
        settings = self.settings
        for served in self.models.values():
            if served.status == "broken" or served.modality is None:
                continue
            served.batcher = Batcher(
                served.name,
                served.modality.process,
                max_batch_size=settings.max_batch_size,
                max_delay_s=settings.max_delay_ms / 1000,
                max_queue_size=settings.max_queue_size,
                workers=settings.batch_workers,
                metrics=BatcherMetrics(self.metrics, served.name),
            )
            served.status = "ready"
            self.metrics.model_ready.labels(served.name).set(1)

    def problems(self) -> list[str]:
        """Why the service is not (fully) ready, one line per reason."""
        reasons = [f"{m.name}: {m.error}" for m in self.models.values() if m.status == "broken"]
        reasons += [
            f"{m.name}: still loading" for m in self.models.values() if m.status == "loading"
        ]
        if not self.models:
            reasons.append(f"no models found in {self.settings.models_dir}")
        return reasons

    def is_ready(self) -> bool:
        if self.shutting_down or not self.models:
            return False
        statuses = [m.status for m in self.models.values()]
        if "loading" in statuses:
            return False
        if self.settings.serve_partial:
            return "ready" in statuses
        return all(s == "ready" for s in statuses)

    # -- serving ---------------------------------------------------------------------------

    def get(self, name: str, task: str) -> ServedModel:
        """The ready model `name` serving `task`, or the error that says why not."""
        served = self.models.get(name)
        if served is None or (served.card is not None and served.card.task != task):
            candidates = sorted(
                m.name for m in self.models.values() if m.card is not None and m.card.task == task
            )
            hint = f"; {task} models here: {', '.join(candidates) or 'none'}"
            if served is not None and served.card is not None:
                hint += f" ({name!r} is a {served.card.task} model)"
            raise ModelNotFound(f"no {task} model named {name!r}{hint}")
        if served.status != "ready":
            raise NotReady(f"model {name!r} is {served.status}: {served.error or 'not ready yet'}")
        return served

    async def close(self) -> None:
        self.shutting_down = True
        for served in self.models.values():
            if served.batcher is not None:
                await served.batcher.close()
