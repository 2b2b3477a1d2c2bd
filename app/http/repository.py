"""The model repository extension of the Open Inference Protocol, at Triton's paths, so that
existing clients (tritonclient's `get_model_repository_index`, `load_model`, `unload_model`)
work unchanged:

    POST /v2/repository/index                  every model and version, state and reason
    POST /v2/repository/models/{name}/load     load, or reload to pick up new versions/config
    POST /v2/repository/models/{name}/unload   drain, then stop serving every version

Load and unload need SMS_MODEL_CONTROL=explicit or poll (403 under none); the index is
read-only and always answers. Errors come in the protocol's shape, `{"error": "message"}`.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.errors import BadRequest, Forbidden, ModelNotFound
from app.http.answers import json_response
from app.http.errors import error_responses
from app.http.flow import registry_of
from app.serving.model import LoadFailed
from app.serving.repository import is_model_name

router = APIRouter(tags=["repository"])


class IndexEntry(BaseModel):
    name: str
    version: str = Field(description="Version folder; empty for a model with no version.")
    state: str = Field(description="READY, UNAVAILABLE, LOADING or UNLOADING.")
    reason: str = Field(description="Why it is not READY: the file and the reason.")


class IndexRequest(BaseModel):
    ready: bool = Field(False, description="List only the READY versions.")


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def _checked_name(request: Request, name: str) -> str:
    if request.app.state.settings.model_control == "none":
        raise Forbidden(
            "model control is disabled: the server runs with SMS_MODEL_CONTROL=none; start it "
            "with SMS_MODEL_CONTROL=explicit (or poll) to load and unload models"
        )
    if not is_model_name(name):
        raise BadRequest(
            f"{name[:64]!r} is not a model name: a plain folder name of the repository "
            "(letters, digits, '_', '.', '-'; no path)"
        )
    return name


@router.post(
    "/v2/repository/index",
    response_model=list[IndexEntry],
    summary="Every model and version of the repository, with its state",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": IndexRequest.model_json_schema()}},
        }
    },
)
async def repository_index(request: Request) -> Response:
    """Triton's index: one entry per version found or served (`state` READY, UNAVAILABLE,
    LOADING or UNLOADING, with the `reason`), and one per model with no version at all."""
    body = await _json_body(request)
    ready_only = bool(body.get("ready", False))
    entries: list[dict[str, str]] = []
    for entry in registry_of(request).models.values():
        if not entry.versions:
            entries.append(
                {
                    "name": entry.name,
                    "version": "",
                    "state": "UNAVAILABLE",
                    "reason": entry.error() or "",
                }
            )
        for status in entry.versions.values():
            entries.append(
                {
                    "name": entry.name,
                    "version": status.version,
                    "state": status.state,
                    "reason": status.reason,
                }
            )
    if ready_only:
        entries = [e for e in entries if e["state"] == "READY"]
    return json_response(entries)  # type: ignore[arg-type]


@router.post(
    "/v2/repository/models/{name}/load",
    summary="Load a model, or reload it (new versions, changed files or config)",
    responses=error_responses(400, 401, 403, 404),
)
async def load_model(request: Request, name: str) -> Response:
    """Builds and warms up the versions the model's version policy serves while the current
    ones keep serving, then switches in one step; replaced versions drain first. A version
    that fails (corrupt ONNX, sha256 mismatch, bad card or config, warm-up error) is listed
    UNAVAILABLE with its reason, the previous one keeps serving, and the answer is 400."""
    _checked_name(request, name)
    body = await _json_body(request)
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict) or any(
        key == "config" or str(key).startswith("file:") for key in parameters
    ):
        raise BadRequest(
            "loading with an overriding config or files is not supported: change the files in "
            "the repository (models/<name>/config.json, models/<name>/<version>/) and load again"
        )
    try:
        await registry_of(request).load(name)
    except LoadFailed as exc:
        raise BadRequest(f"failed to load {name!r}: {exc}") from None
    return Response(b"", media_type="application/json")


@router.post(
    "/v2/repository/models/{name}/unload",
    summary="Unload a model (queued and running requests finish first)",
    responses=error_responses(400, 401, 403, 404),
)
async def unload_model(request: Request, name: str) -> Response:
    """Stops routing requests to every version of the model, lets what is queued and running
    finish, then closes its sessions. The model stays listed (UNAVAILABLE, "unloaded")."""
    _checked_name(request, name)
    await _json_body(request)
    registry = registry_of(request)
    if name not in registry.models:
        raise ModelNotFound(f"no model named {name!r} is loaded")
    await registry.unload(name)
    return Response(b"", media_type="application/json")
