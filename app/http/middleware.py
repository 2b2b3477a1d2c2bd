"""The one outermost ASGI middleware: request id, body limit, request metrics and access log.

Pure ASGI (no BaseHTTPMiddleware, no extra task per request) and outside FastAPI's own error
middleware, so that even a 500 carries the X-Request-ID header and is counted.
"""

from __future__ import annotations

import logging
import random
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import BodyTooLarge, error_response
from app.logs import request_id_var
from app.metrics import Metrics

log = logging.getLogger("app.access")
errors_log = logging.getLogger("app.errors")

REQUEST_ID_HEADER = b"x-request-id"
# Scope keys this middleware reads back after the app answered: when the request arrived, and
# which model and version served it (set by app.http.flow once the registry found them).
ARRIVAL_KEY = "sms.arrival"
MODEL_KEY = "sms.model"
VERSION_KEY = "sms.version"
_MAX_CLIENT_ID_LENGTH = 128


def _client_request_id(raw: bytes | None) -> str | None:
    """A client-chosen id is kept when it is short printable ASCII (it ends up in logs)."""
    if not raw or len(raw) > _MAX_CLIENT_ID_LENGTH:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


_random = random.Random()


def _new_request_id() -> str:
    # Not os.urandom: that releases the GIL for a syscall, and getting the GIL back from a busy
    # batch worker can stall the event loop for a whole switch interval.
    return f"{_random.getrandbits(64):016x}"


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics, access_log: bool
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope[ARRIVAL_KEY] = time.monotonic()
        client_id = content_length = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                client_id = value
            elif name == b"content-length":
                content_length = value
        request_id = _client_request_id(client_id) or _new_request_id()
        request_id_header = (REQUEST_ID_HEADER, request_id.encode())
        token = request_id_var.set(request_id)
        status = 500
        response_started = False
        limit = self.max_body_bytes
        received = 0

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(_too_large(received, limit, streamed=True))
            return message

        try:
            declared = _declared_length(content_length)
            if declared is not None and declared > limit:
                response = error_response(413, "payload_too_large", _too_large(declared, limit))
                await response(scope, receive, send_with_request_id)
            else:
                await self.app(scope, receive_within_limit, send_with_request_id)
        except Exception:
            errors_log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not response_started:
                response = error_response(500, "internal_error", "internal error; quote the id")
                await response(scope, receive, send_with_request_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            self.metrics.observe_request(
                getattr(route, "path", "unmatched"),
                scope.get(MODEL_KEY, ""),
                scope.get(VERSION_KEY, ""),
                status,
                seconds,
            )
            if self.access_log:
                log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, seconds * 1000)
            request_id_var.reset(token)


def _declared_length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _too_large(size: int, limit: int, streamed: bool = False) -> str:
    if streamed:
        return f"request body exceeds the limit of {limit} bytes (SMS_MAX_BODY_BYTES)"
    return f"request body is {size} bytes; the limit is {limit} bytes (SMS_MAX_BODY_BYTES)"
