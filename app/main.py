"""The FastAPI application: `create_app(settings)` builds it, the lifespan loads, validates and
warms up every model before the first request, and `app` is what `uvicorn app.main:app` serves."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from app import routes
from app.errors import install_error_handlers
from app.http.cors import install_cors
from app.http.pages import page_routes
from app.logs import configure_logging
from app.metrics import Metrics
from app.middleware import RequestContextMiddleware
from app.modalities import MODULES
from app.registry import ModelRegistry
from app.settings import Settings

log = logging.getLogger("app.main")

DESCRIPTION = """
Serves small image, text and audio classifiers (ONNX Runtime, dynamic batching).

* `POST /predict/image` — multipart upload, field `files` (one or more), form fields `model`
  (`mnist`, `cifar10`) and `top_k`.
* `POST /predict/sentiment` — JSON `{"text": "..."}` or `{"texts": [...]}`.
* `POST /predict/speech` — multipart WAV upload, field `files`.

Every answer carries the model name and version, the request id (also the `X-Request-ID`
header; send your own to correlate logs) and per item the label, its calibrated probability,
the top-k classes and `abstain` — true when the model is not sure.

Send `X-Deadline-Ms` to bound the wait: a request that cannot be answered in time gets 504.

Every error has one shape: `{"error": {"code", "message", "request_id"}}`.
"""

TAGS = [
    {"name": "predict", "description": "Classify images, texts and speech."},
    {"name": "models", "description": "The served models: cards and runtime facts."},
    {"name": "service", "description": "Health, readiness and metrics."},
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
            max_body_bytes=settings.max_body_bytes,
            metrics=self.state.metrics,
            access_log=settings.access_log,
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_format, settings.log_level)
    metrics = Metrics()
    registry = ModelRegistry(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_format, settings.log_level)  # after uvicorn's own setup
        await asyncio.to_thread(registry.load_all)
        registry.start_batchers()
        try:
            _refuse_unless_servable(registry, settings)
        except StartupError:
            await registry.close()
            raise
        log.info("ready: %s", ", ".join(f"{n} ({m.status})" for n, m in registry.models.items()))
        # Everything alive now (models, vocabularies, the app) lives for the whole process: move
        # it out of the collector's sight, or each full collection walks it (~30 ms p99 spikes).
        gc.freeze()
        try:
            yield
        finally:
            await registry.close()

    app = ServingApp(
        title="Small model server",
        description=DESCRIPTION,
        version="0.1.0",
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # app/http/pages.py serves /docs and /redoc from the package
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = registry
    install_error_handlers(app)
    # The routers' routes go straight into the app's route list, predict routes first: an
    # included router is matched through a wrapper of its own, which costs ~14 µs a request.
    routers = [module.router for module in MODULES]
    if settings.enable_benchmark_routes:
        routers += [module.noop_router for module in MODULES]
    for router in [*routers, routes.router]:
        app.router.routes.extend(router.routes)
    app.router.routes.extend(page_routes())
    install_cors(app, settings)
    return app


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


app = create_app()
