"""The request flow every predict route shares, kept lean because it runs once per request on
the event loop: find the model, work out the deadline, submit raw items to the model's batcher,
await them, and answer with JSON bytes straight from orjson (no response-model validation, no
jsonable_encoder; orjson writes a typical answer in 0.3 µs where json.dumps takes 5 µs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from starlette.responses import Response
from starlette.types import Message, Receive

from app.errors import InvalidInput, ServiceError
from app.logs import request_id_var
from app.modalities.base import Scores, prediction_dict

if TYPE_CHECKING:
    from app.registry import ModelRegistry, ServedModel

DEADLINE_HEADER = "x-deadline-ms"
ARRIVAL_KEY = "sms.arrival"  # scope key: time.monotonic() when the request arrived
MODEL_KEY = "sms.model"  # scope key: model name, for the request metrics


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


def find_model(request: Request, name: str, task: str) -> ServedModel:
    request.scope[MODEL_KEY] = name
    return registry_of(request).get(name, task)


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


async def run_items(request: Request, served: ServedModel, items: Sequence[Any]) -> list[Scores]:
    """Submit every item to the model's batcher and wait for all of them, within the deadline.

    Items fail one by one (a bad file gets its own 422) but the request fails as a whole, with
    the error of its first failed item.
    """
    batcher = served.batcher
    assert batcher is not None
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


def json_response(payload: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


def predictions_response(
    served: ServedModel,
    scores: Sequence[Scores],
    top_k: int,
    heads: Sequence[dict[str, Any]] | None = None,
    with_score: bool = False,
) -> Response:
    """The common answer: model, version, request id and one prediction per item; `heads`
    gives each item's modality-specific leading fields (e.g. the file name)."""
    card = served.card
    assert card is not None
    threshold = card.calibration.abstain_threshold
    labels = card.labels
    predictions = [
        prediction_dict(
            labels, item_scores, top_k, threshold, heads[i] if heads else {}, with_score
        )
        for i, item_scores in enumerate(scores)
    ]
    return json_response(
        {
            "model": card.name,
            "version": card.version,
            "request_id": request_id_var.get(),
            "predictions": predictions,
        }
    )
