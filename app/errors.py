"""One JSON error shape for every 4xx and 5xx the service sends:

    {"error": {"code": "payload_too_large", "message": "...", "request_id": "..."}}

`code` is stable and meant for programs; `message` is for people and names the offending
file, field or limit. FastAPI's own validation errors, 404 and 405 are rewritten to this shape.
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
from starlette.responses import Response

from app.logs import request_id_var

log = logging.getLogger("app.errors")


class ServiceError(HTTPException):
    """An answer the service chose to give. Subclasses `HTTPException` so that errors raised
    while FastAPI reads the body (e.g. the body limit) pass through its parser untouched."""

    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(status_code or type(self).status_code, message, headers)
        self.message = message
        self.code = code or type(self).code
        self.details = details


class BadRequest(ServiceError):
    status_code, code = 400, "bad_request"


class PayloadTooLarge(ServiceError):
    status_code, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status_code, code = 415, "unsupported_media_type"


class InvalidInput(ServiceError):
    status_code, code = 422, "invalid_input"


class ModelNotFound(ServiceError):
    status_code, code = 404, "model_not_found"


class QueueFull(ServiceError):
    status_code, code = 503, "queue_full"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class NotReady(ServiceError):
    status_code, code = 503, "model_not_ready"


class DeadlineExceeded(ServiceError):
    status_code, code = 504, "deadline_exceeded"


class BatchFailed(ServiceError):
    status_code, code = 500, "batch_failed"


class ClientDisconnected(ServiceError):
    """Set on a request dropped because its client went away; nobody reads the answer."""

    status_code, code = 499, "client_disconnected"


_CODE_BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    504: "deadline_exceeded",
}


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


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers, exc.details)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, exc.headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def validation_failure(errors: Sequence[Any]) -> InvalidInput:
    """pydantic/FastAPI validation errors as one 422: a readable message plus per-field details."""
    details = [
        {"field": _location(err.get("loc", ())), "problem": str(err.get("msg", ""))}
        for err in errors
    ]
    message = "; ".join(f"{d['field']}: {d['problem']}" for d in details) or "invalid request"
    return InvalidInput(message, details=details)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    failure = validation_failure(exc.errors())
    return error_response(422, failure.code, failure.message, details=failure.details)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; quote the request id")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
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
    404: "Unknown model (or route).",
    413: "Body over SMS_MAX_BODY_BYTES, or an image over SMS_MAX_IMAGE_PIXELS.",
    415: "Unsupported content type of the request or of an uploaded file.",
    422: "Invalid input: undecodable file (named), empty or too long text, too many items, "
    "bad parameter.",
    500: "The batch this request was part of failed inside the model; other batches are fine.",
    503: "Queue full (see Retry-After) or model not ready.",
    504: "The deadline (X-Deadline-Ms or the default) cannot be met.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses, all in the one error shape."""
    return {
        status: {"model": ErrorResponse, "description": _MEANINGS.get(status, "Error.")}
        for status in statuses
    }
