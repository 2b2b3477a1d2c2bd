"""Service routes: liveness, readiness, the model list and cards, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.errors import ModelNotFound, error_responses
from app.modalities import ENDPOINTS
from app.predict import json_response, registry_of

router = APIRouter()


class Health(BaseModel):
    status: str = Field(examples=["alive"])


class Readiness(BaseModel):
    ready: bool
    models: dict[str, str] = Field(description="Status of every model: ready, loading or broken.")
    problems: list[str] = Field(description="Why a model is not serving, with file and reason.")


class ModelSummary(BaseModel):
    name: str
    version: str | None
    task: str | None
    status: str
    endpoint: str | None
    labels: list[str] | None
    error: str | None


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(BaseModel):
    name: str
    card: dict[str, Any] | None = Field(description="The model card (app/card.py), as shipped.")
    runtime: dict[str, Any] = Field(
        description="Status, error, providers in use, threads, batching settings, queue depth, "
        "load and warm-up seconds."
    )


@router.get("/healthz", response_model=Health, tags=["service"], summary="Liveness")
async def healthz() -> Response:
    """200 while the process serves HTTP at all."""
    return json_response({"status": "alive"})


@router.get(
    "/readyz",
    response_model=Readiness,
    tags=["service"],
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "Not ready; `problems` says why."}},
)
async def readyz(request: Request) -> Response:
    """200 once every model is loaded and warmed up (with SMS_SERVE_PARTIAL: every healthy
    one; the broken ones are listed under `problems`); 503 with the reasons otherwise."""
    registry = registry_of(request)
    ready = registry.is_ready()
    body = {
        "ready": ready,
        "models": {name: m.status for name, m in registry.models.items()},
        "problems": registry.problems(),
    }
    return json_response(body, 200 if ready else 503)


@router.get("/models", response_model=ModelList, tags=["models"], summary="List the models")
async def list_models(request: Request) -> Response:
    """Every model found in the repository, broken ones included (with their error)."""
    models = []
    for name, served in registry_of(request).models.items():
        card = served.card
        models.append(
            {
                "name": name,
                "version": card.version if card else None,
                "task": card.task if card else None,
                "status": served.status,
                "endpoint": ENDPOINTS.get(card.task) if card else None,
                "labels": card.labels if card else None,
                "error": served.error,
            }
        )
    return json_response({"models": models})


@router.get(
    "/models/{name}",
    response_model=ModelDetail,
    tags=["models"],
    summary="One model's card and runtime facts",
    responses=error_responses(404),
)
async def get_model(request: Request, name: str) -> Response:
    """The full model card (data, training, metrics, calibration) plus what the server made of
    it: execution providers in use, batching settings, load and warm-up time, status, error."""
    registry = registry_of(request)
    served = registry.models.get(name)
    if served is None:
        raise ModelNotFound(f"no model named {name!r}; models here: {', '.join(registry.models)}")
    card = served.card.model_dump(mode="json") if served.card else None
    return json_response(
        {"name": name, "card": card, "runtime": served.runtime_facts(registry.settings)}
    )


@router.get(
    "/metrics",
    tags=["service"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(request: Request) -> Response:
    """Requests and latency by route, model and status; per-model queue wait, batch size and
    compute time; queue depth; 503/504 rejections; readiness and execution providers."""
    registry = registry_of(request)
    for served in registry.models.values():
        if served.batcher is not None:
            registry.metrics.queue_depth.labels(served.name).set(served.batcher.queue_depth)
    return Response(generate_latest(registry.metrics.registry), media_type=CONTENT_TYPE_LATEST)
