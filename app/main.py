"""The application factory: `create_app(settings)` builds the FastAPI app over a model registry.
Its lifespan configures logging, loads and warms up every model before the first request, and
drains the batchers at shutdown. Nothing is built at import time: `python -m app` (or `uvicorn
--factory app.main:create_app`) builds exactly one app, and a Ray Serve replica can embed one."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from app.http import repository, service, v2_routes
from app.http.cors import install_cors
from app.http.errors import install_error_handlers
from app.http.middleware import RequestContextMiddleware
from app.http.pages import page_routes
from app.http.predict import TASK_ROUTES, task_routes
from app.logs import configure_logging
from app.metrics import Metrics
from app.processes import ProcessGroup
from app.serving.registry import ModelRegistry
from app.settings import Settings

log = logging.getLogger("app.main")

DESCRIPTION = """
Serves small image, text and audio classifiers (ONNX Runtime, dynamic batching).

* `POST /predict/image` — multipart upload, field `files` (one or more), form fields `model`
  (`mnist`, `cifar10`), `version` and `top_k`.
* `POST /predict/sentiment` — JSON `{"text": "..."}` or `{"texts": [...]}`.
* `POST /predict/speech` — multipart WAV upload, field `files`.

Every answer carries the model name and the version that computed it (a folder of the model
repository), the request id (also the `X-Request-ID` header; send your own to correlate logs)
and per item the label, its calibrated probability, the top-k classes and `abstain` — true when
the model is not sure.

Send `X-Deadline-Ms` to bound the wait: a request that cannot be answered in time gets 504.

Every error has one shape: `{"error": {"code", "message", "request_id"}}`.
"""

TAGS = [
    {"name": "predict", "description": "Classify images, texts and speech."},
    {"name": "models", "description": "The served models: cards, versions and runtime facts."},
    {"name": "service", "description": "Health, readiness and metrics."},
    v2_routes.V2_TAG,
    {
        "name": "repository",
        "description": "Load, reload and unload models while serving (Triton's repository "
        "extension; SMS_MODEL_CONTROL=explicit or poll).",
    },
    {"name": "benchmark", "description": "No-op routes (SMS_ENABLE_BENCHMARK_ROUTES=true)."},
]


class StartupError(RuntimeError):
    """The model repository cannot be served as configured."""


class ServingApp(FastAPI):
    """FastAPI with our request middleware outermost, outside FastAPI's own error middleware,
    so that every response (500s included) carries the request id and is counted."""

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        return RequestContextMiddleware(
            super().build_middleware_stack(),
            settings=settings,
            metrics=self.state.metrics,
            routes=self.router.routes,
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    registry = ModelRegistry(settings, metrics)
    group = ProcessGroup.from_environment(settings.workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_format, settings.log_level)
        if group:
            group.publish(registry)  # listed as not ready while loading
        await registry.load_all()
        try:
            _refuse_unless_servable(registry, settings)
        except StartupError:
            await registry.close()
            if group:
                group.withdraw()
            raise
        log.info(
            "ready: %s",
            ", ".join(
                f"{name} ({entry.status}, versions {', '.join(entry.serving) or 'none'})"
                for name, entry in registry.models.items()
            ),
        )
        if settings.model_control == "poll":
            registry.start_polling(settings.model_poll_s)
        # Everything alive now (models, vocabularies, the app) lives for the whole process: move
        # it out of the collector's sight, or each full collection walks it (~30 ms p99 spikes).
        gc.freeze()
        sharing = asyncio.create_task(_keep_group_informed(registry, group)) if group else None
        try:
            yield
        finally:
            if sharing:
                sharing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sharing
            await registry.close()
            if group:
                group.withdraw()

    app = ServingApp(
        title="Small model server",
        description=DESCRIPTION,
        version="0.2.0",
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # app/http/pages.py serves /docs and /redoc from the package
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.process_group = group
    install_error_handlers(app)
    # Routes go straight into the app's route list, predict routes first: an included router
    # is matched through a wrapper of its own, which costs ~14 µs a request.
    for spec in TASK_ROUTES:
        app.router.routes.extend(task_routes(spec, with_noop=False))
    if settings.enable_benchmark_routes:
        for spec in TASK_ROUTES:
            app.router.routes.extend(task_routes(spec, with_noop=True)[1:])
    app.router.routes.extend(service.router.routes)
    app.router.routes.extend(v2_routes.router.routes)
    app.router.routes.extend(repository.router.routes)
    app.router.routes.extend(page_routes())
    install_cors(app, settings)
    return app


async def _keep_group_informed(registry: ModelRegistry, group: ProcessGroup) -> None:
    """Each second, publish this worker's readiness and queue depths for the others: /readyz
    and /metrics are answered by whichever worker accepted the connection."""
    while True:
        try:
            group.publish(registry)
            registry.update_queue_depths()
        except OSError as error:  # the shared folder is the supervisor's: keep serving
            log.warning("cannot publish this process's state: %s", error)
        await asyncio.sleep(1.0)


def _refuse_unless_servable(registry: ModelRegistry, settings: Settings) -> None:
    problems = registry.problems()
    if not problems:
        return
    if settings.serve_partial:
        for problem in problems:
            log.warning("serving without %s", problem)
        return
    raise StartupError(
        "cannot serve the model repository (set SMS_SERVE_PARTIAL=true to serve the healthy "
        "models anyway):\n  " + "\n  ".join(problems)
    )
