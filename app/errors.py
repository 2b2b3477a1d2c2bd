"""The domain errors of the service: what went wrong, in words a client can act on.

Every layer raises these (pipelines: bad input; serving: queue full, deadline, not ready);
none of them knows HTTP. `app.http.errors` maps each to its status code and the one JSON shape.
`code` is stable and meant for programs; `message` is for people and names the offending file,
field or limit.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An answer the service chose to give instead of a result."""

    code = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ServiceError):
    code = "bad_request"


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    code = "unsupported_media_type"


class InvalidInput(ServiceError):
    code = "invalid_input"


class ModelNotFound(ServiceError):
    code = "model_not_found"


class Unauthorized(ServiceError):
    code = "unauthorized"


class Forbidden(ServiceError):
    code = "forbidden"


class QueueFull(ServiceError):
    code = "queue_full"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(ServiceError):
    code = "model_not_ready"


class DeadlineExceeded(ServiceError):
    code = "deadline_exceeded"


class BatchFailed(ServiceError):
    code = "batch_failed"


class ClientDisconnected(ServiceError):
    """Set on a request dropped because its client went away; nobody reads the answer."""

    code = "client_disconnected"
