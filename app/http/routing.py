"""`LeanRoute`: the route class of the predict (and no-op) routes.

Their endpoints are `async def endpoint(request: Request) -> Response`: they parse the body
themselves (app/http/forms.py) and answer with ready JSON bytes, so FastAPI's per-request machinery
(dependency solving, body reading and validation, response serialisation) has nothing to do, yet
it cost ~30 µs a request here, about 7% of the server's CPU per prediction. A LeanRoute calls the
endpoint directly. It is still an APIRoute: routing, exception handlers and OpenAPI (request body
from `openapi_extra`, response from `response_model`) are FastAPI's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response


class LeanRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        parameters = list(inspect.signature(endpoint).parameters.values())
        if len(parameters) != 1 or not inspect.iscoroutinefunction(endpoint):
            raise TypeError(
                f"{endpoint.__qualname__}: a LeanRoute endpoint is "
                "`async def f(request: Request) -> Response`"
            )
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint
