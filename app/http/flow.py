"""The request flow every inference route shares (task routes and the Open Inference Protocol),
kept lean because it runs once per request on the event loop: find the model version, work out
the deadline, submit raw items to the version's batcher and await them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from fastapi import Request
from starlette.types import Message, Receive

from app.errors import InvalidInput, ServiceError
from app.http.middleware import ARRIVAL_KEY, MODEL_KEY, VERSION_KEY
from app.pipelines.base import Scores
from app.processes import Readiness, readiness
from app.serving.model import LoadedVersion
from app.serving.registry import ModelRegistry, version_or_none

DEADLINE_HEADER = "x-deadline-ms"


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


def readiness_of(request: Request) -> Readiness:
    """The one readiness rule /readyz and /v2/health/ready share: every model of every serving
    process."""
    return readiness(registry_of(request), request.app.state.process_group)


def find_model(
    request: Request, name: str, task: str | None = None, version: str | None = None
) -> LoadedVersion:
    """The serving version, or the domain error that says why not. Only a model that exists
    labels the request metrics: a client-chosen name never becomes a label value."""
    served = registry_of(request).get(name, task, version_or_none(version))
    request.scope[MODEL_KEY] = served.name
    request.scope[VERSION_KEY] = served.version
    return served


def deadline_of(request: Request) -> float:
    """The request's deadline as a `time.monotonic()` instant, counted from its arrival."""
    arrival = request.scope.get(ARRIVAL_KEY) or time.monotonic()
    header = request.headers.get(DEADLINE_HEADER)
    if header is None:
        budget_ms = request.app.state.settings.default_deadline_ms
    else:
        try:
            budget_ms = float(header)
        except ValueError:
            budget_ms = -1.0
        if not budget_ms > 0:
            raise InvalidInput(f"X-Deadline-Ms must be a positive number of ms, got {header!r}")
    return arrival + budget_ms / 1000


def disconnect_probe(receive: Receive) -> Callable[[], bool]:
    """A cheap, non-blocking "has the client gone?" for the batcher to call before compute.

    ASGI only tells of a disconnect through `receive()`. Once the body has been read, a server's
    `receive()` completes without suspending only when the client has gone (or the response is
    done), so driving the coroutine one step answers the question without waiting; a pending
    coroutine is closed again, which leaves the server's state as it was.
    """
    gone = False

    def probe() -> bool:
        nonlocal gone
        if gone:
            return True
        step = receive()
        try:
            step.send(None)  # type: ignore[attr-defined]
        except StopIteration as done:
            message: Message = done.value
            gone = message.get("type") == "http.disconnect"
            return gone
        except Exception:
            return False
        step.close()  # type: ignore[attr-defined]
        return False

    return probe


async def run_items(request: Request, served: LoadedVersion, items: Sequence[Any]) -> list[Scores]:
    """Submit every item to the model's batcher and wait for all of them, within the deadline.

    Items fail one by one (a bad file gets its own 422) but the request fails as a whole, with
    the error of its first failed item.
    """
    batcher = served.batcher
    deadline = deadline_of(request)
    probe = disconnect_probe(request.receive)
    futures: list[asyncio.Future[Any]] = []
    try:
        for item in items:
            futures.append(batcher.submit(item, deadline, probe))
    except ServiceError:  # queue full or deadline hopeless: withdraw what was queued
        for future in futures:
            future.cancel()
        raise
    try:
        if len(futures) == 1:
            return [await futures[0]]
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def run_tensors(
    request: Request, served: LoadedVersion, feed: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Submit client-made graph inputs (one feed, any number of rows) to the version's tensor
    batcher, within the deadline; the graph's outputs by name come back."""
    deadline = deadline_of(request)
    future = served.tensor_batcher.submit(feed, deadline, disconnect_probe(request.receive))
    try:
        return await future
    finally:
        if not future.done():
            future.cancel()
