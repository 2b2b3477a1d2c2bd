"""The Open Inference Protocol (KServe V2 REST) routes: one more front door onto the same models,
pipelines and batchers as the task routes, so Triton and KServe clients work unchanged.

The wire format is `app.http.oip`; this module is glue: find the model, choose the way in, submit,
encode. Two ways in, both listed in the model metadata:

- raw: a BYTES input `input` [-1], one element per file (image, audio) or UTF-8 text, through the
  model's own pipeline and batcher (same preprocessing, limits, abstain rule as the task routes);
  outputs `label` BYTES [-1], `probability` FP32 [-1], `abstain` BOOL [-1] and `probabilities`
  FP32 [-1, classes] in the card's label order.
- tensor: the graph's own inputs by their card names (e.g. `image` FP32 [-1, 1, 28, 28]) for
  clients that preprocess themselves; the graph's outputs come back.

Errors are in the V2 shape `{"error": "message"}` (Triton's clients read `error` as a string), with
the task routes' status codes, except that an invalid item (422 there) is a 400 here as in Triton.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.card import ModelCard, TensorSpec
from app.errors import ServiceError
from app.http import oip
from app.http.answers import abstain_reason
from app.http.errors import headers_of
from app.http.errors import status_of as http_status_of
from app.http.flow import find_model, readiness_of, registry_of, run_items, run_tensors
from app.pipelines.base import Scores, Upload
from app.pipelines.text import TextPipeline
from app.serving.model import LoadedVersion

RAW_INPUT = "input"
RAW_OUTPUTS = ("label", "probability", "abstain", "probabilities")
EXTENSIONS = ("binary_tensor_data", "model_repository", "parameters")
SERVER_NAME = "small-model-server"
V2_TAG = {
    "name": "v2",
    "description": "Open Inference Protocol (KServe V2 REST, as Triton speaks it): tritonclient "
    "and KServe clients work unchanged. Binary tensor data extension supported.",
}
_DTYPES = {"float32": "FP32", "int64": "INT64"}
_TEXT_TASK = "text-classification"


# -- seams: the only lines that know the serving core and the HTTP layer's helpers -----------


def served_model(request: Request) -> LoadedVersion:
    """The serving version the path names, or ModelNotFound / NotReady; find_model labels
    the request metrics only with a model the registry found."""
    params = request.path_params
    return find_model(request, params["name"], None, params.get("version"))


def status_of(exc: ServiceError) -> tuple[int, dict[str, str] | None]:
    """A domain error's status code and headers (Retry-After on a full queue), as the task
    routes answer it; an invalid item (422 there) is a 400 here, as Triton answers it."""
    status = http_status_of(exc)
    return (400 if status == 422 else status), headers_of(exc)


def max_items(request: Request) -> int:
    return request.app.state.settings.max_items


# -- what a card offers over V2 ----------------------------------------------------------------


def graph_tensor(spec: TensorSpec) -> oip.TensorMetadata:
    """A card tensor in V2 terms: named (dynamic) dimensions become -1."""
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in spec.shape)
    return oip.TensorMetadata(spec.name, _DTYPES[spec.dtype], shape)


def raw_outputs(classes: int) -> list[oip.TensorMetadata]:
    return [
        oip.TensorMetadata("label", "BYTES", (-1,)),
        oip.TensorMetadata("probability", "FP32", (-1,)),
        oip.TensorMetadata("abstain", "BOOL", (-1,)),
        oip.TensorMetadata("probabilities", "FP32", (-1, classes)),
    ]


def model_inputs(card: ModelCard) -> list[oip.TensorMetadata]:
    return [oip.TensorMetadata(RAW_INPUT, "BYTES", (-1,)), *map(graph_tensor, card.inputs)]


def model_outputs(card: ModelCard) -> list[oip.TensorMetadata]:
    """The raw way's outputs, then the graph's own (its `probabilities` is the raw one: same
    name, datatype, shape and meaning, so it is listed once)."""
    outputs = raw_outputs(len(card.labels))
    names = {output.name for output in outputs}
    return outputs + [graph_tensor(s) for s in card.outputs if s.name not in names]


def raw_output_tensors(
    card: ModelCard, scores: Sequence[Scores], abstaining: bool = True
) -> list[oip.OutputTensor]:
    """Per-item scores as the raw way's four outputs; abstain as the task routes decide it."""
    classes = len(card.labels)
    probabilities = np.zeros((len(scores), classes), dtype=np.float32)
    for row, item in enumerate(scores):
        if len(item.indices) != classes:
            raise RuntimeError(
                f"the batcher returned {len(item.indices)} of {classes} classes; the V2 "
                "`probabilities` output needs all of them"
            )
        probabilities[row, item.indices] = item.probabilities
    best = np.array([item.probabilities[0] for item in scores], dtype=np.float32)
    threshold = card.calibration.abstain_threshold
    abstain = [abstaining and abstain_reason(item, threshold) is not None for item in scores]
    return [
        oip.OutputTensor.from_texts("label", [card.labels[item.indices[0]] for item in scores]),
        oip.OutputTensor.from_array("probability", best),
        oip.OutputTensor.from_array("abstain", np.array(abstain, dtype=bool)),
        oip.OutputTensor.from_array("probabilities", probabilities),
    ]


# -- the route class: V2 error shape, no per-request FastAPI machinery --------------------------


def v2_error(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(oip.error_body(message), status_code, headers, media_type="application/json")


class V2Route(APIRoute):
    """Calls `async def endpoint(request) -> Response` directly (as app/http/routing.py's LeanRoute
    does, for the same ~30 µs a request) and answers its errors in the V2 shape."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            try:
                return await endpoint(request)
            except oip.ProtocolError as exc:
                return v2_error(exc.status_code, exc.message)
            except ServiceError as exc:
                status, headers = status_of(exc)
                return v2_error(status, exc.message, headers)

        return handle


def json_response(payload: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code, media_type="application/json")


# -- OpenAPI documentation (the endpoints build their answers themselves) --------------------------


class V2Error(BaseModel):
    error: str = Field(examples=["input 'image' must be FP32, got FP64"])


class ServerMetadata(BaseModel):
    name: str = Field(examples=[SERVER_NAME])
    version: str = Field(examples=["0.1.0"])
    extensions: list[str] = Field(examples=[list(EXTENSIONS)])


class MetadataTensor(BaseModel):
    name: str
    datatype: str = Field(examples=["FP32"])
    shape: list[int] = Field(description="-1 where the size is dynamic", examples=[[-1, 10]])


class ModelMetadata(BaseModel):
    name: str = Field(examples=["mnist"])
    versions: list[str] = Field(examples=[["1.0.0"]])
    platform: str = Field(examples=[oip.PLATFORM])
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class OutputData(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = Field(None, description="Flat, row-major; absent when binary.")
    parameters: dict[str, Any] | None = Field(None, examples=[{"binary_data_size": 40}])


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputData]


_TEXT_EXAMPLE = {
    "id": "review-1",
    "inputs": [
        {
            "name": RAW_INPUT,
            "datatype": "BYTES",
            "shape": [1],
            "data": ["A moving, beautifully acted film."],
        }
    ],
    "outputs": [{"name": "label"}, {"name": "probability"}, {"name": "abstain"}],
}
_TENSOR_EXAMPLE = {
    "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}],
    "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
}
_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON, or (binary tensor data extension) a JSON header of "
        "`Inference-Header-Content-Length` bytes followed by the inputs' binary data.",
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "examples": {
                    "text": {
                        "summary": "raw way in: a BYTES text (POST to /v2/models/imdb/infer)",
                        "value": _TEXT_EXAMPLE,
                    },
                    "tensor": {
                        "summary": "tensor way in: FP32 pixels (POST to /v2/models/mnist/infer)",
                        "value": _TENSOR_EXAMPLE,
                    },
                },
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _path_parameters(*names: str) -> dict[str, Any]:
    return {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
    }


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    meanings = {
        400: "Bad request: malformed body, wrong datatype or shape, invalid item; or (ready) "
        "not ready.",
        404: "Unknown model or version.",
        413: "Body over SMS_MAX_BODY_BYTES.",
        503: "Model not ready, or queue full (see Retry-After).",
        504: "The deadline (X-Deadline-Ms or the default) cannot be met.",
    }
    return {status: {"model": V2Error, "description": meanings[status]} for status in statuses}


router = APIRouter(route_class=V2Route, tags=["v2"])


def _model_route(
    method: str, suffix: str, endpoint: Callable[[Request], Awaitable[Response]], **kwargs: Any
) -> None:
    """Register `endpoint` at /v2/models/{name}<suffix> and at .../versions/{version}<suffix>."""
    extra = kwargs.pop("openapi_extra", {})
    for path, parameters in [
        ("/v2/models/{name}", ("name",)),
        ("/v2/models/{name}/versions/{version}", ("name", "version")),
    ]:
        router.add_api_route(
            path + suffix,
            endpoint,
            methods=[method],
            openapi_extra={**extra, **_path_parameters(*parameters)},
            **kwargs,
        )


# -- server ------------------------------------------------------------------------------------


@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> Response:
    """Name, version and the protocol extensions spoken here."""
    return json_response(oip.server_metadata(SERVER_NAME, request.app.version, EXTENSIONS))


@router.get("/v2/health/live", summary="Liveness (V2)", responses={200: {"content": None}})
async def server_live(request: Request) -> Response:
    """200 while the process serves HTTP at all."""
    return Response(status_code=200)


@router.get("/v2/health/ready", summary="Readiness (V2)", responses={200: {}, **_errors(400)})
async def server_ready(request: Request) -> Response:
    """200 once the models are loaded and warmed up (as /readyz); 400 otherwise, as Triton
    answers (the V2 spec: a 4xx means false)."""
    if readiness_of(request).ready:
        return Response(status_code=200)
    return v2_error(400, "not ready; /readyz says why")


# -- models ------------------------------------------------------------------------------------


async def model_metadata(request: Request) -> Response:
    """Versions, platform and the tensors of both ways in: `input` (BYTES, raw items) or the
    graph's own inputs; the raw way's outputs and the graph's."""
    served = served_model(request)
    card = served.card
    versions = list(registry_of(request).models[served.name].serving)
    return json_response(
        oip.model_metadata(
            card.name, versions, model_inputs(card), model_outputs(card), oip.PLATFORM
        )
    )


async def model_ready(request: Request) -> Response:
    """200 when the model (version) serves; 400 with the reason while it loads or is broken,
    404 when there is no such model."""
    try:
        served = served_model(request)
    except ServiceError as exc:
        if status_of(exc)[0] == 404:
            raise
        return v2_error(400, exc.message)
    return json_response(oip.model_ready(served.card.name, served.version, True))


async def infer(request: Request) -> Response:
    """Run the model on a V2 infer request; see the module docstring for the two ways in."""
    served = served_model(request)
    card = served.card
    declared = {tensor.name: tensor for tensor in model_inputs(card)}
    parsed = oip.parse_infer_request(
        await request.body(), request.headers.get(oip.HEADER_LENGTH), inputs=declared
    )
    raw = parsed.input(RAW_INPUT)
    if raw is not None:
        if len(parsed.inputs) > 1:
            raise oip.ProtocolError(
                f"send either `{RAW_INPUT}` (raw items) or the graph's inputs, not both"
            )
        oip.check_requested_outputs(parsed, RAW_OUTPUTS)
        items = _raw_items(request, card, raw)
        abstaining = parsed.parameters.get("abstain", True) is not False
        outputs = raw_output_tensors(card, await run_items(request, served, items), abstaining)
    else:
        graph_outputs = [spec.name for spec in card.outputs]
        oip.check_requested_outputs(parsed, graph_outputs)
        feed = _graph_feed(request, served, parsed)
        results = await run_tensors(request, served, feed)
        outputs = [oip.OutputTensor.from_array(name, results[name]) for name in graph_outputs]
    body, header_length = oip.encode_infer_response(card.name, served.version, parsed, outputs)
    headers = None if header_length is None else {oip.HEADER_LENGTH: str(header_length)}
    media_type = "application/json" if header_length is None else "application/octet-stream"
    return Response(body, 200, headers, media_type=media_type)


def _check_rows(request: Request, rows: int, what: str) -> None:
    """The task routes' item limit (SMS_MAX_ITEMS) holds here too."""
    limit = max_items(request)
    if rows == 0:
        raise oip.ProtocolError(f"{what} has no items")
    if rows > limit:
        raise oip.ProtocolError(f"{rows} items in one request; the limit is {limit}")


def _raw_items(request: Request, card: ModelCard, raw: oip.InferInput) -> list[Any]:
    """BYTES elements as the pipeline's raw items: texts for a text model, uploads otherwise
    (named `input[i]` so that a failed item's error names it)."""
    assert isinstance(raw.data, list)
    _check_rows(request, len(raw.data), f"input {RAW_INPUT!r}")
    if card.task != _TEXT_TASK:
        return [Upload(f"{RAW_INPUT}[{i}]", data) for i, data in enumerate(raw.data)]
    texts = []
    for i, data in enumerate(raw.data):
        try:
            texts.append(data.decode())
        except UnicodeDecodeError:
            raise oip.ProtocolError(f"{RAW_INPUT}[{i}] is not UTF-8 text") from None
    return texts


def _graph_feed(
    request: Request, served: LoadedVersion, parsed: oip.InferRequest
) -> dict[str, Any]:
    """The graph's inputs, all of them, with one batch size (parse checked datatype and
    shape); token ids must lie in the model's vocabulary."""
    card = served.card
    feed = {}
    for spec in card.inputs:
        tensor = parsed.input(spec.name)
        if tensor is None:
            names = ", ".join(s.name for s in card.inputs)
            raise oip.ProtocolError(
                f"missing input {spec.name!r}: send `{RAW_INPUT}` (raw items) or all of the "
                f"graph's inputs ({names})"
            )
        assert isinstance(tensor.data, np.ndarray)
        feed[spec.name] = tensor.data
    if len({array.shape[0] for array in feed.values()}) > 1:
        raise oip.ProtocolError("the graph's inputs must have the same batch size")
    pipeline = served.pipeline
    if isinstance(pipeline, TextPipeline):
        ids = feed[pipeline.input_name]
        size = pipeline.tokenizer.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= size):
            raise oip.ProtocolError(f"token ids must lie in [0, {size}) (the model's vocabulary)")
    _check_rows(request, next(iter(feed.values())).shape[0], "the batch")
    return feed


_model_route(
    "GET",
    "",
    model_metadata,
    response_model=ModelMetadata,
    summary="Model metadata",
    responses=_errors(404, 503),
)
_model_route(
    "GET",
    "/ready",
    model_ready,
    summary="Model readiness",
    responses={200: {}, **_errors(400, 404)},
)
_model_route(
    "POST",
    "/infer",
    infer,
    response_model=InferResponse,
    summary="Inference (JSON tensors or binary tensor data)",
    openapi_extra=_INFER_BODY,
    responses=_errors(400, 404, 413, 503, 504),
)
