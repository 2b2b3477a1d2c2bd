"""Service routes: liveness, readiness, the model list and cards, Prometheus metrics."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.errors import ModelNotFound
from app.http.answers import json_response
from app.http.errors import error_responses
from app.http.flow import readiness_of, registry_of
from app.http.predict import TASK_ROUTES
from app.serving.registry import ModelEntry

ENDPOINTS = {spec.pipeline.task: spec.path for spec in TASK_ROUTES}

router = APIRouter()


def process_header() -> dict[str, str]:
    """Which serving process answered (asked each time: a forked process has a pid of its own)."""
    return {"X-Server-Process": str(os.getpid())}


class Health(BaseModel):
    status: str = Field(examples=["alive"])


class Readiness(BaseModel):
    ready: bool
    models: dict[str, str] = Field(
        description="Status of every model: ready, loading, unloaded or broken."
    )
    problems: list[str] = Field(description="Why a model is not serving, with file and reason.")
    processes: list[dict[str, Any]] | None = Field(
        None,
        description="With SMS_WORKERS > 1: every serving process (pid, ready, its models' "
        "status); ready only when each is.",
    )


class VersionSummary(BaseModel):
    version: str = Field(description="Folder name: a positive integer.")
    state: str = Field(description="READY, UNAVAILABLE, LOADING or UNLOADING.")
    reason: str = Field(description="Why it is not READY (file and reason), else empty.")
    release: str | None = Field(description="The card's own version string.")


class ModelSummary(BaseModel):
    name: str
    version: str | None = Field(description="The version answers come from by default.")
    versions: list[VersionSummary]
    task: str | None
    status: str = Field(description="ready, loading, unloaded or broken.")
    endpoint: str | None
    labels: list[str] | None
    error: str | None


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    card: dict[str, Any] | None = Field(description="The model card (app/card.py), as shipped.")
    directory: str
    version_policy: str | None = Field(description="latest N, all, or specific versions.")
    runtime: dict[str, dict[str, Any]] = Field(
        description="Per serving version: providers in use, threads, instances, batching "
        "settings, queue depth, load and warm-up seconds."
    )


@router.get("/healthz", response_model=Health, tags=["service"], summary="Liveness")
async def healthz() -> Response:
    """200 while the process serves HTTP at all. `X-Server-Process` names the process (its pid)
    that answered."""
    return json_response({"status": "alive"}, headers=process_header())


@router.get(
    "/readyz",
    response_model=Readiness,
    tags=["service"],
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "Not ready; `problems` says why."}},
)
async def readyz(request: Request) -> Response:
    """200 once every model is loaded and warmed up (with SMS_SERVE_PARTIAL: every healthy
    one; the broken ones are listed under `problems`), in every serving process (SMS_WORKERS,
    listed under `processes`); 503 with the reasons otherwise."""
    readiness = readiness_of(request)
    status = 200 if readiness.ready else 503
    return json_response(readiness.body(), status, headers=process_header())


@router.get("/models", response_model=ModelList, tags=["models"], summary="List the models")
async def list_models(request: Request) -> Response:
    """Every model found in the repository, broken ones included (with their error), and
    every version of each with its state."""
    entries = registry_of(request).models.values()
    return json_response({"models": [model_summary(entry) for entry in entries]})


def model_summary(entry: ModelEntry) -> dict[str, Any]:
    card = entry.card
    latest = entry.latest()
    return {
        "name": entry.name,
        "version": latest.version if latest else None,
        "versions": [
            {
                "version": status.version,
                "state": status.state,
                "reason": status.reason,
                "release": status.card.version if status.card else None,
            }
            for status in entry.versions.values()
        ],
        "task": card.task if card else None,
        "status": entry.status,
        "endpoint": ENDPOINTS.get(card.task) if card else None,
        "labels": card.labels if card else None,
        "error": entry.error(),
    }


@router.get(
    "/models/{name}",
    response_model=ModelDetail,
    tags=["models"],
    summary="One model's card and runtime facts",
    responses=error_responses(404),
)
async def get_model(request: Request, name: str) -> Response:
    """The card of the latest served version (data, training, metrics, calibration), every
    version with its state, and what the server made of each serving version: execution
    providers in use, instances, batching settings, load and warm-up time."""
    registry = registry_of(request)
    entry = registry.models.get(name)
    if entry is None:
        shown = name if len(name) <= 64 else name[:64] + "…"
        raise ModelNotFound(
            f"no model named {shown!r}; models here: {', '.join(registry.models) or 'none'}"
        )
    card = entry.card.model_dump(mode="json") if entry.card else None
    serving = entry.serving_settings
    return json_response(
        {
            **model_summary(entry),
            "card": card,
            "directory": str(entry.directory),
            "version_policy": serving.version_policy.describe() if serving else None,
            "runtime": {v: loaded.runtime_facts() for v, loaded in entry.serving.items()},
        }
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
    registry.update_queue_depths()
    group = request.app.state.process_group
    text = group.metrics_text() if group else generate_latest(registry.metrics.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
