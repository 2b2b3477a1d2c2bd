"""Text: `POST /predict/sentiment`, JSON `{"text": "..."}` or `{"texts": ["...", ...]}`.

Texts are tokenised in the worker with the model's own `app.tokenizer` vocabulary and fed as
int64 `token_ids` [batch, sequence], padded with the card's `pad_id`. Within a batch the texts
are grouped by token count (power-of-two buckets), one ONNX Runtime run per group, so a short
review is padded to at most twice its length, never to the longest review of the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from app.card import ModelCard, TextPreprocessing
from app.errors import InvalidInput, error_responses
from app.forms import json_openapi, read_json
from app.modalities.base import CardMismatch, Modality, Prediction
from app.predict import find_model, json_response, predictions_response, run_items
from app.routing import LeanRoute
from app.runtime import batch_buckets, bucket_for
from app.tokenizer import Tokenizer


def _length_bucket(length: int) -> int:
    """The power of two at or above `length`: texts in one bucket share a padded length."""
    return 1 << max(0, length - 1).bit_length()


class TextModality(Modality):
    task = "text-classification"

    @classmethod
    def check_card(cls, card: ModelCard) -> None:
        prep = card.preprocessing
        if not isinstance(prep, TextPreprocessing):
            raise CardMismatch(f"task {card.task} needs text preprocessing, card has {prep.kind}")
        spec = card.inputs[0]
        if spec.dtype != "int64" or spec.shape != ["batch", "sequence"]:
            raise CardMismatch(
                f"input {spec.name} must be int64 ['batch', 'sequence'], card says "
                f"{spec.dtype} {spec.shape}"
            )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        prep = self.card.preprocessing
        assert isinstance(prep, TextPreprocessing)
        self.pad_id = prep.pad_id
        path = self.directory / prep.tokenizer_file
        try:
            self.tokenizer = Tokenizer.load(path)
        except Exception as exc:
            raise CardMismatch(f"{path}: cannot load the tokenizer: {exc}") from exc
        self.max_chars = min(self.settings.max_text_chars, prep.max_chars)
        self.length_buckets = batch_buckets(max(1, self.tokenizer.max_ids))

    def decode(self, raw: str) -> np.ndarray:
        ids = self.tokenizer.encode(raw)
        if ids.size == 0:  # nothing the vocabulary knows: one padding token, the model's "blank"
            return np.full(1, self.pad_id, dtype=np.int64)
        return ids

    def group(self, arrays: Sequence[np.ndarray]) -> list[list[int]]:
        groups: dict[int, list[int]] = defaultdict(list)
        for index, ids in enumerate(arrays):
            groups[_length_bucket(len(ids))].append(index)
        return [groups[length] for length in sorted(groups)]

    def collate(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        length = max(len(ids) for ids in arrays)
        if self.session.pad_to_buckets:
            length = bucket_for(length, self.length_buckets)
        batch = np.full((len(arrays), length), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(arrays):
            batch[row, : len(ids)] = ids
        return {self.input_name: batch}

    def sequence_lengths(self) -> list[int]:
        return self.length_buckets

    def example(self) -> str:
        known = list(self.tokenizer.vocab)[:50]
        return " ".join(known) or "warm-up"


# -- HTTP ----------------------------------------------------------------------------------


class SentimentRequest(BaseModel):
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
    model: str = Field(default="imdb", description="Text-classification model.")
    top_k: int = Field(default=2, ge=1, description="Classes to list per text (capped).")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> SentimentRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("send exactly one of `text` (a string) or `texts` (a list)")
        return self

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class TextPrediction(Prediction):
    score: float = Field(ge=0, le=1, description="Probability of `label` (same as `probability`).")


class SentimentResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "imdb",
                    "version": "1.0.0",
                    "request_id": "5f0c2a9e41b37d86",
                    "predictions": [
                        {
                            "label": "positive",
                            "score": 0.973114,
                            "probability": 0.973114,
                            "abstain": False,
                            "top_k": [
                                {"label": "positive", "probability": 0.973114},
                                {"label": "negative", "probability": 0.026886},
                            ],
                        }
                    ],
                }
            ]
        }
    )

    model: str
    version: str
    request_id: str
    predictions: list[TextPrediction]


def _checked_texts(request: Request, body: SentimentRequest, max_chars: int) -> list[str]:
    texts = body.items()
    max_items = request.app.state.settings.max_items
    if not texts:
        raise InvalidInput("`texts` is empty; send at least one text")
    if len(texts) > max_items:
        raise InvalidInput(f"{len(texts)} texts in one request; the limit is {max_items}")
    for index, text in enumerate(texts):
        where = "text" if body.text is not None else f"texts[{index}]"
        if not text.strip():
            raise InvalidInput(f"{where} is empty")
        if len(text) > max_chars:
            raise InvalidInput(f"{where} has {len(text)} characters; the limit is {max_chars}")
    return texts


ENDPOINT = "/predict/sentiment"
router = APIRouter(tags=["predict"], route_class=LeanRoute)
noop_router = APIRouter(tags=["benchmark"], route_class=LeanRoute)


@router.post(
    ENDPOINT,
    response_model=SentimentResponse,
    openapi_extra=json_openapi(SentimentRequest),
    summary="Classify the sentiment of texts",
    description=(
        'JSON `{"text": "..."}` or `{"texts": ["...", ...]}`, optional `model` (default '
        "`imdb`) and `top_k`. Each text gets its label (`positive`/`negative` for imdb), "
        "`score` (its probability), top-k and `abstain` (true = not sure)."
    ),
    responses=error_responses(404, 413, 415, 422, 500, 503, 504),
)
async def predict_sentiment(request: Request) -> Response:
    body = await read_json(request, SentimentRequest)
    served = find_model(request, body.model, TextModality.task)
    modality = served.modality
    assert isinstance(modality, TextModality)
    texts = _checked_texts(request, body, modality.max_chars)
    scores = await run_items(request, served, texts)
    return predictions_response(served, scores, body.top_k, with_score=True)


@noop_router.post(
    "/noop/sentiment",
    openapi_extra=json_openapi(SentimentRequest),
    summary="Parse a sentiment request, answer without inference (benchmark only)",
)
async def noop_sentiment(request: Request) -> Response:
    body = await read_json(request, SentimentRequest)
    texts = _checked_texts(request, body, request.app.state.settings.max_text_chars)
    return json_response({"ok": True, "items": len(texts)})


MODALITY = TextModality
