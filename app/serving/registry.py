"""The served models and their versions, and their life cycle: load at start-up, and (with
SMS_MODEL_CONTROL explicit or poll) load, reload and unload while serving.

A (re)load builds and warms up the new versions in a worker thread while the old ones keep
serving, then switches the routing table in one step on the event loop; versions it replaces
drain (their queued and running batches finish on them) before their sessions close. A version
that fails to build is listed UNAVAILABLE with its reason and never replaces a serving one.

`get()` hands out a LoadedVersion (nothing optional) or raises the domain error that says why
not. Routes look a model up and submit to its batcher with no await in between, so a request
never holds a version that has stopped taking work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.card import ModelCard
from app.errors import ModelNotFound, NotReady
from app.metrics import Metrics
from app.serving.config import ServingSettings
from app.serving.model import LoadedVersion, LoadFailed, load_version
from app.serving.repository import (
    ModelFolder,
    is_model_name,
    is_version_name,
    model_names,
    read_model,
    stat_fingerprint,
)
from app.settings import Settings

log = logging.getLogger("app.registry")

State = Literal["READY", "UNAVAILABLE", "LOADING", "UNLOADING"]


@dataclass
class VersionStatus:
    """What the repository index says of one version."""

    version: str
    state: State
    reason: str = ""
    card: ModelCard | None = None


@dataclass
class ModelEntry:
    name: str
    directory: Path
    problem: str | None = None
    versions: dict[str, VersionStatus] = field(default_factory=dict)
    serving: dict[str, LoadedVersion] = field(default_factory=dict)
    serving_settings: ServingSettings | None = None
    unloaded: bool = False
    loading: bool = False
    fingerprint: tuple[object, ...] = ()
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def latest(self) -> LoadedVersion | None:
        if not self.serving:
            return None
        return self.serving[max(self.serving, key=int)]

    @property
    def card(self) -> ModelCard | None:
        """The card of the latest serving version, else of the newest version found."""
        latest = self.latest()
        if latest is not None:
            return latest.card
        cards = [s.card for _, s in sorted(self.versions.items(), key=lambda i: int(i[0]))]
        return next((c for c in reversed(cards) if c is not None), None)

    @property
    def status(self) -> str:
        """One word for /readyz and /models: ready, loading, unloaded or broken."""
        if self.serving:
            return "ready"
        if self.loading:
            return "loading"
        return "unloaded" if self.unloaded else "broken"

    def error(self) -> str | None:
        if self.problem:
            return self.problem
        if self.serving:
            return None
        reasons = [
            f"version {v}: {s.reason}" for v, s in self.versions.items() if s.state != "READY"
        ]
        return "; ".join(reasons) or None


class ModelRegistry:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ModelEntry] = {}
        self.shutting_down = False
        self._poller: asyncio.Task[None] | None = None

    # -- serving ---------------------------------------------------------------------------

    def get(self, name: str, task: str | None = None, version: str | None = None) -> LoadedVersion:
        """The serving version `version` (default: the latest) of model `name`, which must
        serve `task` when one is given; else the error that says why not."""
        entry = self.models.get(name)
        card = entry.card if entry is not None else None
        if entry is None or (task is not None and card is not None and card.task != task):
            raise ModelNotFound(self._not_found_message(name, task, entry))
        if version is None:
            loaded = entry.latest()
            if loaded is None:
                raise NotReady(f"model {name!r} is {entry.status}: {entry.error() or 'not ready'}")
            return loaded
        loaded = entry.serving.get(version)
        if loaded is not None:
            return loaded
        status = entry.versions.get(version)
        if status is None:
            known = ", ".join(sorted(entry.versions, key=int)) or "none"
            raise ModelNotFound(f"model {name!r} has no version {version!r}; versions: {known}")
        raise NotReady(
            f"model {name!r} version {version} is {status.state}: {status.reason or 'not ready'}"
        )

    def _not_found_message(self, name: str, task: str | None, entry: ModelEntry | None) -> str:
        shown = name if len(name) <= 64 else name[:64] + "…"
        if task is None:
            return f"no model named {shown!r}; models here: {', '.join(self.models) or 'none'}"
        candidates = sorted(
            n for n, e in self.models.items() if e.card is not None and e.card.task == task
        )
        message = f"no {task} model named {shown!r}; {task} models here: "
        message += ", ".join(candidates) or "none"
        if entry is not None and entry.card is not None:
            message += f" ({shown!r} is a {entry.card.task} model)"
        return message

    def is_ready(self) -> bool:
        if self.shutting_down or not self.models:
            return False
        statuses = [e.status for e in self.models.values()]
        if "loading" in statuses:
            return False
        if self.settings.serve_partial:
            return "ready" in statuses
        return all(s in ("ready", "unloaded") for s in statuses)

    def problems(self) -> list[str]:
        """Why the service is not (fully) ready, one line per reason."""
        reasons = [f"{e.name}: {e.error()}" for e in self.models.values() if e.status == "broken"]
        reasons += [f"{e.name}: still loading" for e in self.models.values() if e.loading]
        if not self.models:
            reasons.append(f"no models found in {self.settings.models_dir}")
        return reasons

    # -- start-up --------------------------------------------------------------------------

    async def load_all(self) -> None:
        """Load every model of the repository (start-up, before the first request)."""
        names = await asyncio.to_thread(model_names, self.settings.models_dir)
        for name in names:
            self.models[name] = ModelEntry(name, self.settings.models_dir / name, loading=True)
        for name in names:
            with contextlib.suppress(LoadFailed):
                await self.load(name)

    # -- life cycle ------------------------------------------------------------------------

    async def load(self, name: str) -> ModelEntry:
        """Load model `name`, or reload it to pick up new versions, changed files or a changed
        config. Raises ModelNotFound when the repository has no such model, LoadFailed (after
        the switch) when a version it should serve failed: the others, and any version serving
        before, keep serving."""
        if not is_model_name(name):
            raise ModelNotFound(f"no model named {name[:64]!r} in the repository")
        entry = self.models.get(name)
        if entry is None:
            entry = self.models[name] = ModelEntry(name, self.settings.models_dir / name)
        async with entry.lock:
            folder = await asyncio.to_thread(read_model, self.settings.models_dir, name)
            if folder is None:
                if not entry.serving and not entry.versions:
                    del self.models[name]
                raise ModelNotFound(
                    f"no model {name!r} in the repository {self.settings.models_dir}"
                )
            entry.fingerprint = await asyncio.to_thread(
                stat_fingerprint, self.settings.models_dir, name
            )
            return await self._load_locked(entry, folder)

    async def _load_locked(self, entry: ModelEntry, folder: ModelFolder) -> ModelEntry:
        name = entry.name
        entry.unloaded = False
        if folder.config_problem is not None:
            entry.problem = folder.config_problem
            entry.loading = False
            self._record_versions(entry, folder, {}, {})
            self._count_load(name, "failed")
            raise LoadFailed(folder.config_problem)
        entry.problem = None
        serving = ServingSettings.resolve(folder.config, self.settings)
        chosen = folder.chosen_versions()
        if not chosen:
            entry.problem = (
                f"{folder.directory}: no version folder matches the version policy "
                f"({folder.config.version_policy.describe()}); found: "
                f"{', '.join(folder.versions) or 'none'}"
            )
        to_build = [
            v
            for v in chosen
            if v not in entry.serving
            or entry.serving[v].fingerprint != folder.versions[v].fingerprint
            or entry.serving[v].serving != serving
        ]
        entry.loading = bool(to_build) and not entry.serving
        for version in to_build:
            entry.versions[version] = VersionStatus(
                version, "LOADING", "", folder.versions[version].card
            )
        built: dict[str, LoadedVersion] = {}
        failed: dict[str, str] = {}
        for version in to_build:
            try:
                built[version] = await asyncio.to_thread(
                    load_version, folder.versions[version], serving, self.settings, self.metrics
                )
            except LoadFailed as exc:
                failed[version] = str(exc)
                log.error("model %s version %s is unavailable: %s", name, version, exc)
        new_serving = {
            v: built.get(v) or entry.serving[v]
            for v in chosen
            if v in built or (v in entry.serving and v not in to_build)
        }
        # A version whose reload failed keeps serving its previous load.
        for version in failed:
            if version in entry.serving:
                new_serving[version] = entry.serving[version]
        if not new_serving:  # nothing new could be served: whatever served before goes on
            new_serving = dict(entry.serving)
        retiring = [old for v, old in entry.serving.items() if new_serving.get(v) is not old]
        entry.serving = dict(sorted(new_serving.items(), key=lambda item: int(item[0])))
        entry.serving_settings = serving
        entry.loading = False
        self._record_versions(entry, folder, failed, {lv.version: lv for lv in retiring})
        self._publish_metrics(entry)
        self._count_load(name, "loaded", len(built))
        self._count_load(name, "failed", len(failed))
        await self._retire(entry, retiring)
        if failed:
            raise LoadFailed("; ".join(f"version {v}: {r}" for v, r in failed.items()))
        if entry.problem and not entry.serving:
            raise LoadFailed(entry.problem)
        return entry

    def _record_versions(
        self,
        entry: ModelEntry,
        folder: ModelFolder,
        failed: dict[str, str],
        retiring: dict[str, LoadedVersion],
    ) -> None:
        """Rewrite the index entries of every version found or still serving."""
        policy = folder.config.version_policy.describe()
        statuses: dict[str, VersionStatus] = {}
        for version, source in folder.versions.items():
            if version in entry.serving:
                loaded = entry.serving[version]
                reason = ""
                if version in failed:
                    reason = f"reload failed, still serving the previous load: {failed[version]}"
                statuses[version] = VersionStatus(version, "READY", reason, loaded.card)
            elif version in retiring:
                statuses[version] = VersionStatus(version, "UNLOADING", "", source.card)
            elif version in failed:
                statuses[version] = VersionStatus(
                    version, "UNAVAILABLE", failed[version], source.card
                )
            elif folder.config_problem is not None:
                statuses[version] = VersionStatus(
                    version, "UNAVAILABLE", folder.config_problem, source.card
                )
            elif source.problem is not None:
                statuses[version] = VersionStatus(
                    version, "UNAVAILABLE", source.problem, source.card
                )
            else:
                statuses[version] = VersionStatus(
                    version, "UNAVAILABLE", f"not served (version policy: {policy})", source.card
                )
        for version, loaded in entry.serving.items():  # serving, though its folder is gone
            statuses.setdefault(
                version,
                VersionStatus(
                    version, "READY", "its folder is gone; reload to unload", loaded.card
                ),
            )
        for version in retiring:
            statuses.setdefault(version, VersionStatus(version, "UNLOADING", "", None))
        entry.versions = dict(sorted(statuses.items(), key=lambda item: int(item[0])))

    async def _retire(self, entry: ModelEntry, retiring: list[LoadedVersion]) -> None:
        for old in retiring:
            await old.drain()
            status = entry.versions.get(old.version)
            if status is not None and status.state == "UNLOADING":
                status.state, status.reason = "UNAVAILABLE", "unloaded"
            if old.version not in entry.serving:
                self.metrics.model_ready.labels(entry.name, old.version).set(0)
            self.metrics.model_unloads.labels(entry.name).inc()
            log.info("model %s version %s unloaded", entry.name, old.version)

    async def unload(self, name: str) -> None:
        """Stop serving every version of `name`; queued and running work finishes first."""
        entry = self.models.get(name) if is_model_name(name) else None
        if entry is None:
            raise ModelNotFound(f"no model named {name[:64]!r} is loaded")
        async with entry.lock:
            retiring = list(entry.serving.values())
            for loaded in retiring:
                entry.versions[loaded.version] = VersionStatus(
                    loaded.version, "UNLOADING", "", loaded.card
                )
            entry.serving = {}
            entry.unloaded = True
            await self._retire(entry, retiring)
            for status in entry.versions.values():
                if status.state != "UNAVAILABLE":
                    status.state, status.reason = "UNAVAILABLE", "unloaded"

    def update_queue_depths(self) -> None:
        """Set the queue-depth gauge of every serving version (before a scrape, and each second
        in a worker of several)."""
        for entry in self.models.values():
            for version, loaded in entry.serving.items():
                self.metrics.queue_depth.labels(entry.name, version).set(loaded.batcher.queue_depth)

    def _publish_metrics(self, entry: ModelEntry) -> None:
        for version, loaded in entry.serving.items():
            self.metrics.model_ready.labels(entry.name, version).set(1)
            for provider in loaded.sessions[0].providers:
                self.metrics.model_provider.labels(entry.name, version, provider).set(1)

    def _count_load(self, name: str, outcome: str, versions: int = 1) -> None:
        if versions:
            self.metrics.model_loads.labels(name, outcome).inc(versions)

    # -- poll mode -------------------------------------------------------------------------

    def start_polling(self, interval_s: float) -> None:
        self._poller = asyncio.get_running_loop().create_task(
            self._poll_forever(interval_s), name="repository-poll"
        )

    async def _poll_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll_once()
            except Exception:
                log.exception("repository poll failed")

    async def poll_once(self) -> None:
        """Load new models, reload changed ones, unload the ones whose folder is gone."""
        models_dir = self.settings.models_dir
        names = await asyncio.to_thread(model_names, models_dir)
        for name in names:
            fingerprint = await asyncio.to_thread(stat_fingerprint, models_dir, name)
            entry = self.models.get(name)
            if entry is not None and entry.fingerprint == fingerprint:
                continue
            log.info("repository poll: model %s is new or changed; loading it", name)
            with contextlib.suppress(LoadFailed, ModelNotFound):
                await self.load(name)
        for name in [n for n in self.models if n not in names]:
            log.info("repository poll: model %s is gone; unloading it", name)
            await self.unload(name)
            del self.models[name]

    # -- shutdown --------------------------------------------------------------------------

    async def close(self) -> None:
        self.shutting_down = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for entry in self.models.values():
            for loaded in entry.serving.values():
                await loaded.close()


def version_or_none(version: str | None) -> str | None:
    """A version from a request: None, or a plain positive integer (ModelNotFound else)."""
    if version is None or version == "":
        return None
    if not is_version_name(version):
        raise ModelNotFound(f"no version {version[:32]!r}: versions are positive integers")
    return version
