"""The task routes (`POST /predict/image`, `/predict/sentiment`, `/predict/speech`), generated
from the pipelines: one route factory per kind of request, multipart uploads or JSON texts.

Adding a route for a new pipeline is one `TaskRoute` in TASK_ROUTES. With
SMS_ENABLE_BENCHMARK_ROUTES each task route gets a no-op twin under /noop/ that parses the
request the same way and answers without inference (to measure the HTTP cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from app.errors import InvalidInput
from app.http.answers import (
    FilePredictionResponse,
    TextPredictionResponse,
    answer_response,
    json_response,
    predictions,
)
from app.http.errors import error_responses
from app.http.flow import find_model, run_items
from app.http.forms import json_openapi, multipart_openapi, read_json, read_uploads
from app.http.routing import LeanRoute
from app.pipelines.audio import AudioPipeline
from app.pipelines.base import Pipeline
from app.pipelines.image import ImagePipeline
from app.pipelines.text import TextPipeline


@dataclass(frozen=True)
class TaskRoute:
    """One task route: its path, the pipeline its models use, and its documentation."""

    path: str
    pipeline: type[Pipeline]
    default_model: str
    summary: str
    description: str
    default_top_k: int = 3
    model_description: str = ""
    files_description: str = ""
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def noop_path(self) -> str:
        return "/noop/" + self.path.rsplit("/", 1)[-1]


def _example(model: str, head: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """A confident answer and an abstaining one, as /docs shows them."""
    probabilities = [0.991203, 0.004711, 0.002093]
    top = [{"label": lab, "probability": p} for lab, p in zip(labels, probabilities, strict=False)]
    sure = {"label": labels[0], "probability": 0.991203, "abstain": False, "reason": None}
    unsure = {"label": labels[0], "probability": 0.991203, "abstain": True}
    unsure["reason"] = "no_content" if model == "mnist" else "out_of_distribution"
    return {
        "model": model,
        "version": "2",
        "request_id": "5f0c2a9e41b37d86",
        "predictions": [{**head, **sure, "top_k": top}, {**head, **unsure, "top_k": top}],
    }


TASK_ROUTES = (
    TaskRoute(
        "/predict/image",
        ImagePipeline,
        default_model="mnist",
        summary="Classify images",
        description=(
            "Upload one or more images as `multipart/form-data` (field `files`, repeatable) and "
            "pick the `model`. For `mnist` a photo or scan of a dark digit on light paper works "
            "as well as an MNIST-style white digit on black: it is cropped, scaled to 20×20 and "
            "centred like MNIST. Each file gets its label, probability, top-k and `abstain` "
            "(true = not sure). `version` picks a version (default: the latest served)."
        ),
        model_description="Image-classification model, e.g. `mnist` or `cifar10`.",
        files_description="One or more images (PNG, JPEG, BMP, GIF or WebP), field `files`.",
        example=_example("mnist", {"file": "digit.png"}, ["7", "9", "1"]),
    ),
    TaskRoute(
        "/predict/sentiment",
        TextPipeline,
        default_model="imdb",
        default_top_k=2,
        summary="Classify the sentiment of texts",
        description=(
            'JSON `{"text": "..."}` or `{"texts": ["...", ...]}`, optional `model` (default '
            "`imdb`), `version` and `top_k`. Each text gets its label (`positive`/`negative` "
            "for imdb), `score` (its probability), top-k and `abstain` (true = not sure)."
        ),
        example=_example("imdb", {"score": 0.991203}, ["positive", "negative"]),
    ),
    TaskRoute(
        "/predict/speech",
        AudioPipeline,
        default_model="speech",
        summary="Recognise spoken keywords",
        description=(
            "Upload WAV files as `multipart/form-data` (field `files`, repeatable). Stereo is "
            "mixed to mono, any sample rate is resampled to 16 kHz, clips shorter than 1 s are "
            "padded and longer ones give their loudest 1-s window. Each file gets its keyword, "
            "probability, top-k and `abstain` (true = not sure)."
        ),
        model_description="Audio-classification model.",
        files_description="One or more WAV files (any PCM or float WAV, any rate), field `files`.",
        example=_example("speech", {"file": "yes.wav"}, ["yes", "left", "unknown"]),
    ),
)

_ERRORS = (400, 404, 413, 415, 422, 500, 503, 504)


def task_routes(spec: TaskRoute, with_noop: bool = False) -> list[APIRoute]:
    """The route (and its no-op twin) for one task, from the factory of its request kind."""
    factory = _upload_routes if spec.pipeline.request_kind == "files" else _text_routes
    routes = factory(spec)
    return routes if with_noop else routes[:1]


def _route(
    spec: TaskRoute, endpoint: Any, answer: type[BaseModel], doc: dict[str, Any]
) -> APIRoute:
    return LeanRoute(
        spec.path,
        endpoint,
        methods=["POST"],
        tags=["predict"],
        summary=spec.summary,
        description=spec.description,
        response_model=answer,
        openapi_extra=doc,
        responses={
            **error_responses(*_ERRORS),
            200: {"content": {"application/json": {"example": spec.example}}},
        },
        name=spec.path,
    )


def _noop_route(spec: TaskRoute, endpoint: Any, doc: dict[str, Any]) -> APIRoute:
    return LeanRoute(
        spec.noop_path,
        endpoint,
        methods=["POST"],
        tags=["benchmark"],
        summary=f"Parse a {spec.path} request, answer without inference (benchmark only)",
        openapi_extra=doc,
        name=spec.noop_path,
    )


# -- uploads (images, audio) ---------------------------------------------------------------


def _upload_routes(spec: TaskRoute) -> list[APIRoute]:
    pipeline = spec.pipeline
    doc = multipart_openapi(
        files_description=spec.files_description,
        model_default=spec.default_model,
        model_description=spec.model_description,
        top_k_default=spec.default_top_k,
        top_k_description=f"How many classes to list per {pipeline.item_noun} (capped).",
    )

    async def predict(request: Request) -> Response:
        received = await read_uploads(request, pipeline.accepted_types, pipeline.item_noun)
        form = received.form
        model = form.text("model", spec.default_model)
        top_k = form.positive_int("top_k", spec.default_top_k)
        served = find_model(request, model, pipeline.task, form.text("version", "") or None)
        uploads = received.uploads
        scores = await run_items(request, served, uploads)
        heads = [{"file": upload.name} for upload in uploads]
        abstaining = form.boolean("abstain", True)
        return answer_response(served, predictions(served, scores, top_k, heads, abstaining))

    async def noop(request: Request) -> Response:
        received = await read_uploads(request, pipeline.accepted_types, pipeline.item_noun)
        received.form.text("model", spec.default_model)
        received.form.positive_int("top_k", spec.default_top_k)
        return json_response({"ok": True, "items": len(received.uploads)})

    return [_route(spec, predict, FilePredictionResponse, doc), _noop_route(spec, noop, doc)]


# -- JSON texts ----------------------------------------------------------------------------


class TextRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "A moving, beautifully acted film. I loved every minute."},
                {
                    "texts": ["Dull and far too long.", "One of the best films of the year!"],
                    "model": "imdb",
                    "top_k": 2,
                },
            ]
        },
    )

    text: str | None = Field(default=None, description="One text to classify.")
    texts: list[str] | None = Field(default=None, description="Several texts, one answer each.")
    model: str | None = Field(default=None, description="Text-classification model (imdb).")
    version: str | None = Field(default=None, description="Model version (default: latest).")
    top_k: int = Field(default=2, ge=1, description="Classes to list per text (capped).")
    abstain: bool = Field(default=True, description="false: never abstain (the bare label).")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> TextRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("send exactly one of `text` (a string) or `texts` (a list)")
        return self

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


def checked_texts(texts: list[str], single: bool, max_items: int, max_chars: int) -> list[str]:
    """422 for no text, too many, an empty one or one over `max_chars`, naming which."""
    if not texts:
        raise InvalidInput("`texts` is empty; send at least one text")
    if len(texts) > max_items:
        raise InvalidInput(f"{len(texts)} texts in one request; the limit is {max_items}")
    for index, text in enumerate(texts):
        where = "text" if single else f"texts[{index}]"
        if not text.strip():
            raise InvalidInput(f"{where} is empty")
        if len(text) > max_chars:
            raise InvalidInput(f"{where} has {len(text)} characters; the limit is {max_chars}")
    return texts


def _text_routes(spec: TaskRoute) -> list[APIRoute]:
    doc = json_openapi(TextRequest)

    async def predict(request: Request) -> Response:
        body = await read_json(request, TextRequest)
        model = body.model or spec.default_model
        served = find_model(request, model, spec.pipeline.task, body.version)
        pipeline = served.pipeline
        assert isinstance(pipeline, TextPipeline)
        settings = request.app.state.settings
        texts = checked_texts(
            body.items(), body.text is not None, settings.max_items, pipeline.max_chars
        )
        scores = await run_items(request, served, texts)
        answers = predictions(served, scores, body.top_k, abstaining=body.abstain)
        for answer in answers:  # the name sentiment clients expect for the probability
            answer["score"] = answer["probability"]
        return answer_response(served, answers)

    async def noop(request: Request) -> Response:
        body = await read_json(request, TextRequest)
        settings = request.app.state.settings
        texts = checked_texts(
            body.items(), body.text is not None, settings.max_items, settings.max_text_chars
        )
        return json_response({"ok": True, "items": len(texts)})

    return [_route(spec, predict, TextPredictionResponse, doc), _noop_route(spec, noop, doc)]
