"""The one outermost ASGI middleware: request id, API keys, the cap on requests in flight, body
limit and body timeout, request metrics and access log.

Pure ASGI (no BaseHTTPMiddleware, no extra task per request) and outside FastAPI's own error
middleware, so that even a 500 carries the X-Request-ID header and is counted. Every label it
writes to the metrics comes from the server (a route template, a model the registry found, the
status), never from what a client sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.auth import KeyRing, required_access
from app.http.errors import BodyTimeout, BodyTooLarge, disconnects_log, error_response_for
from app.logs import request_id_var
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger("app.access")
errors_log = logging.getLogger("app.errors")

REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED = "unmatched"  # the route label of every path no route serves
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
        self, app: ASGIApp, *, settings: Settings, metrics: Metrics, routes: Sequence[BaseRoute]
    ) -> None:
        self.app = app
        self.max_body_bytes = settings.max_body_bytes
        self.body_timeout_s = settings.body_timeout_s
        self.max_in_flight = settings.max_connections
        self.protect_observability = settings.protect_observability
        self.keys = KeyRing(settings.api_keys, settings.admin_keys)
        self.metrics = metrics
        self.access_log = settings.access_log
        self.routes = routes
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope[ARRIVAL_KEY] = time.monotonic()
        client_id = content_length = authorization = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                client_id = value
            elif name == b"content-length":
                content_length = value
            elif name == b"authorization":
                authorization = value
        request_id = _client_request_id(client_id) or _new_request_id()
        request_id_header = (REQUEST_ID_HEADER, request_id.encode())
        token = request_id_var.set(request_id)
        path = scope["path"]
        status = 500
        response_started = False
        limit = self.max_body_bytes
        received = 0
        body_deadline = scope[ARRIVAL_KEY] + self.body_timeout_s
        body_done = False
        self.in_flight += 1

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        async def receive_within_limits() -> Message:
            nonlocal received, body_done
            if body_done:  # later calls only learn of a disconnect: no timer for them
                return await receive()
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout_at(loop.time() + body_deadline - time.monotonic()):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.body_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(_too_large(received, limit, streamed=True))
                body_done = not message.get("more_body", False)
            return message

        async def refuse(status: int, code: str, message: str, **headers: str) -> None:
            response = error_response_for(path, status, code, message, headers or None)
            await response(scope, receive, send_with_request_id)

        try:
            declared = _declared_length(content_length)
            # A CORS preflight never carries credentials; the request it announces does.
            needed = (
                "open"
                if scope["method"] == "OPTIONS"
                else required_access(path, self.protect_observability)
            )
            refusal = self.keys.refusal(needed, authorization)
            if refusal is not None:
                status_code, message = refusal
                if status_code == 401:
                    await refuse(401, "unauthorized", message, **{"WWW-Authenticate": "Bearer"})
                else:
                    await refuse(403, "forbidden", message)
            elif self.in_flight > self.max_in_flight:
                await refuse(
                    503,
                    "too_many_connections",
                    f"more than {self.max_in_flight} requests in flight (SMS_MAX_CONNECTIONS); "
                    "retry shortly",
                    **{"Retry-After": "1"},
                )
            elif declared is not None and declared > limit:
                await refuse(413, "payload_too_large", _too_large(declared, limit))
            else:
                await self.app(scope, receive_within_limits, send_with_request_id)
        except (BodyTimeout, BodyTooLarge) as exc:  # raised outside FastAPI's handlers
            if not response_started:
                await refuse(exc.status_code, exc.code, str(exc.detail), **(exc.headers or {}))
        except ClientDisconnect:
            status = 499
            disconnects_log.info("%s %s: the client hung up mid-request", scope["method"], path)
        except Exception:
            errors_log.exception("unhandled error in %s %s", scope["method"], path)
            if not response_started:
                await refuse(500, "internal_error", "internal error; quote the request id")
        finally:
            self.in_flight -= 1
            seconds = time.perf_counter() - started
            self.metrics.observe_request(
                self._route_label(scope),
                scope.get(MODEL_KEY, ""),
                scope.get(VERSION_KEY, ""),
                status,
                seconds,
            )
            if self.access_log:
                log.info("%s %s %d %.1f ms", scope["method"], path, status, seconds * 1000)
            request_id_var.reset(token)

    def _route_label(self, scope: Scope) -> str:
        """The template of the route that served (or would have served) the request: FastAPI
        routes say so in the scope; others (docs, pages) and requests refused before routing
        are matched against the app's routes; anything else is UNMATCHED."""
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path", UNMATCHED)
        for candidate in self.routes:
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                return getattr(candidate, "path", UNMATCHED)
        return UNMATCHED


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
