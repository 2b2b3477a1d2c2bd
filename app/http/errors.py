"""Domain errors (app.errors) as HTTP answers, all in one JSON shape:

    {"error": {"code": "payload_too_large", "message": "...", "request_id": "..."}}

FastAPI's own validation errors, 404 and 405 are rewritten to this shape too. An unexpected
exception becomes a 500 here and is logged once, by the request middleware, which sees it
propagate (Starlette re-raises after the handler answers).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.errors import (
    BadRequest,
    BatchFailed,
    ClientDisconnected,
    DeadlineExceeded,
    Forbidden,
    InvalidInput,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
    QueueFull,
    ServiceError,
    Unauthorized,
    UnsupportedMediaType,
)
from app.logs import request_id_var

disconnects_log = logging.getLogger("app.disconnects")

STATUS_OF: dict[type[ServiceError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    ModelNotFound: 404,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidInput: 422,
    ClientDisconnected: 499,
    BatchFailed: 500,
    QueueFull: 503,
    NotReady: 503,
    DeadlineExceeded: 504,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    504: "deadline_exceeded",
}


class BodyTooLarge(HTTPException):
    """Raised by the middleware while a body is read: an HTTPException, so that FastAPI's own
    body parsing (on routes that use it) passes it through untouched."""

    code = "payload_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class BodyTimeout(HTTPException):
    """The body did not arrive in time: 408, and the connection is closed (a client that
    stalls mid-body cannot be trusted to frame its next request)."""

    code = "request_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {timeout_s:g} s (SMS_BODY_TIMEOUT_S)",
            headers={"Connection": "close"},
        )


def status_of(exc: ServiceError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS_OF.get(cls)  # type: ignore[arg-type]
        if status is not None:
            return status
    return 500


def headers_of(exc: ServiceError) -> dict[str, str] | None:
    if isinstance(exc, QueueFull):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="small-model-server"'}
    return None


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id_var.get()}
    if details:
        error["details"] = details
    return orjson.dumps({"error": error})


def error_response(
    status_code: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response:
    return Response(
        error_body(code, message, details),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def v2_error_response(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The Open Inference Protocol's error shape: `{"error": "message"}`."""
    return Response(
        orjson.dumps({"error": message}),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def error_response_for(
    path: str,
    status_code: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response:
    """An error in the shape of the protocol `path` belongs to: V2 under /v2, ours elsewhere."""
    if path.startswith("/v2"):
        return v2_error_response(status_code, message, headers)
    return error_response(status_code, code, message, headers, details)


def service_error_response(exc: ServiceError, path: str = "") -> Response:
    return error_response_for(
        path, status_of(exc), exc.code, exc.message, headers_of(exc), exc.details
    )


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return service_error_response(exc, request.url.path)


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    """A client that hung up mid-request: counted as 499, logged once at info, no traceback."""
    disconnects_log.info("%s %s: the client hung up mid-request", request.method, request.url.path)
    return Response(status_code=499)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = getattr(exc, "code", None) or _CODE_BY_STATUS.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return error_response_for(request.url.path, exc.status_code, code, message, exc.headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def validation_failure(errors: Sequence[Any]) -> InvalidInput:
    """pydantic/FastAPI validation errors as one 422: a readable message plus per-field details
    (an error about the whole body has no field, and its message no leading ": ")."""
    details = [
        {"field": _location(err.get("loc", ())), "problem": str(err.get("msg", ""))}
        for err in errors
    ]
    message = (
        "; ".join(f"{d['field']}: {d['problem']}" if d["field"] else d["problem"] for d in details)
        or "invalid request"
    )
    return InvalidInput(message, details=details)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return service_error_response(validation_failure(exc.errors()), request.url.path)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Not logged here: the request middleware logs it once, with the method and path.
    return error_response_for(
        request.url.path, 500, "internal_error", "internal error; quote the request id"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_input`.")
    message: str = Field(description="What went wrong, naming the file, field or limit.")
    request_id: str = Field(description="Also in the X-Request-ID header; quote it in reports.")
    details: list[dict[str, str]] | None = Field(
        default=None, description="Per-field problems of a validation error."
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


_MEANINGS = {
    400: "Malformed request, or a model name or version that is not a plain folder name.",
    401: "Missing or wrong API key (SMS_API_KEYS / SMS_ADMIN_KEYS): send Authorization: Bearer.",
    403: "Not allowed: an admin key is needed, or SMS_MODEL_CONTROL forbids it.",
    404: "Unknown model, version (or route).",
    408: "The request body did not arrive within SMS_BODY_TIMEOUT_S.",
    413: "Body over SMS_MAX_BODY_BYTES, or an image over SMS_MAX_IMAGE_PIXELS.",
    415: "Unsupported content type of the request or of an uploaded file.",
    422: "Invalid input: undecodable file (named), empty or too long text, too many items, "
    "bad parameter.",
    500: "The batch this request was part of failed inside the model; other batches are fine.",
    503: "Queue full (see Retry-After), model not ready, or too many connections.",
    504: "The deadline (X-Deadline-Ms or the default) cannot be met.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses, all in the one error shape."""
    return {
        status: {"model": ErrorResponse, "description": _MEANINGS.get(status, "Error.")}
        for status in statuses
    }
