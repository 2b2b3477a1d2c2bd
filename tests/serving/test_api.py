"""The three predict endpoints and the service routes, over real HTTP against the real app."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from model_factory import (
    digit_strokes,
    image_bytes,
    image_reference,
    text_reference,
    tone,
    wav_bytes,
)

from app.pipelines.base import Upload
from app.pipelines.digits import centre_digit
from app.pipelines.image import fit_image, open_image


def _preprocessed(model, data: bytes) -> np.ndarray:
    image = open_image(Upload("x", data), 10**8)
    prep = model.card.preprocessing
    if prep.digit_centering:
        pixels = centre_digit(image)
    else:
        pixels = fit_image(image, "L" if prep.channels == 1 else "RGB", prep.width, prep.height)
    return (pixels.astype(np.float32) / 255)[np.newaxis]


def test_image_prediction_matches_the_model(client: httpx.Client, standard_models) -> None:
    rng = np.random.default_rng(1)
    files = [
        ("files", ("seven.png", image_bytes(digit_strokes()), "image/png")),
        (
            "files",
            (
                "noise.bmp",
                image_bytes(rng.integers(0, 255, (40, 30), np.uint8), "BMP"),
                "image/bmp",
            ),
        ),
    ]
    response = client.post("/predict/image", files=files, data={"model": "mnist", "top_k": "4"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mnist" and body["version"] == "1"
    assert body["request_id"] == response.headers["x-request-id"]
    mnist = standard_models["mnist"]
    for (_, (name, data, _)), prediction in zip(files, body["predictions"], strict=True):
        expected = image_reference(mnist, _preprocessed(mnist, data))[0]
        order = np.argsort(-expected)
        assert prediction["file"] == name
        assert prediction["label"] == mnist.card.labels[order[0]]
        assert prediction["probability"] == pytest.approx(expected[order[0]], abs=1e-5)
        assert [k["label"] for k in prediction["top_k"]] == [
            mnist.card.labels[i] for i in order[:4]
        ]
        threshold = mnist.card.calibration.abstain_threshold
        if name == "noise.bmp":  # nothing digit-like: abstains whatever the probability
            assert prediction["abstain"] and prediction["reason"] == "no_content"
        else:
            low = expected[order[0]] < threshold
            assert prediction["abstain"] == low
            assert prediction["reason"] == ("low_confidence" if low else None)


def test_colour_model_gets_a_resized_rgb_image(client: httpx.Client, standard_models) -> None:
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 255, (48, 64, 3), np.uint8)
    data = image_bytes(photo, "JPEG", quality=95)
    response = client.post(
        "/predict/image",
        files={"files": ("cat.jpg", data, "image/jpeg")},
        data={"model": "cifar10"},
    )
    assert response.status_code == 200, response.text
    cifar = standard_models["cifar10"]
    expected = image_reference(cifar, _preprocessed(cifar, data))[0]
    prediction = response.json()["predictions"][0]
    assert prediction["label"] == cifar.card.labels[int(np.argmax(expected))]
    assert len(prediction["top_k"]) == 3


def test_sentiment_single_and_many(client: httpx.Client, standard_models) -> None:
    imdb = standard_models["imdb"]
    texts = ["A wonderful, moving film. Great fun!", "Awful and boring, far too long.", "great"]
    response = client.post("/predict/sentiment", json={"texts": texts})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == ["positive", "negative", "positive"]
    for text, prediction in zip(texts, predictions, strict=True):
        expected = text_reference(imdb, text)
        assert prediction["score"] == pytest.approx(expected.max(), abs=1e-5)
        assert prediction["score"] == prediction["probability"]
    single = client.post("/predict/sentiment", json={"text": texts[1], "model": "imdb", "top_k": 1})
    assert single.status_code == 200
    assert single.json()["predictions"][0]["label"] == "negative"
    assert len(single.json()["predictions"][0]["top_k"]) == 1


def test_texts_of_mixed_lengths_get_their_own_answers(
    client: httpx.Client, standard_models
) -> None:
    """Length grouping must not mix up which answer belongs to which text."""
    imdb = standard_models["imdb"]
    words = ["great", "awful", "wonderful film", "boring story", "moving", "terrible acting"]
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 30))) for _ in range(20)]
    response = client.post("/predict/sentiment", json={"texts": texts, "top_k": 2})
    assert response.status_code == 200, response.text
    for text, prediction in zip(texts, response.json()["predictions"], strict=True):
        expected = text_reference(imdb, text)
        got = {k["label"]: k["probability"] for k in prediction["top_k"]}
        assert got["negative"] == pytest.approx(expected[0], abs=1e-5)
        assert got["positive"] == pytest.approx(expected[1], abs=1e-5)


def test_speech_recognises_the_tone(client: httpx.Client) -> None:
    clip = wav_bytes(tone(700, 1.0, 16000), 16000)
    response = client.post("/predict/speech", files={"files": ("tone.wav", clip, "audio/wav")})
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    assert prediction["label"] == "700hz" and prediction["file"] == "tone.wav"
    assert prediction["probability"] > 0.99 and prediction["abstain"] is False


def test_client_request_id_is_kept(client: httpx.Client) -> None:
    response = client.post(
        "/predict/sentiment", json={"text": "great"}, headers={"X-Request-ID": "my-trace-42"}
    )
    assert response.headers["x-request-id"] == "my-trace-42"
    assert response.json()["request_id"] == "my-trace-42"
    generated = client.get("/healthz").headers["x-request-id"]
    assert generated and generated != client.get("/healthz").headers["x-request-id"]


def test_health_readiness_and_models(client: httpx.Client, standard_models) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"] == {name: "ready" for name in standard_models}
    listed = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert listed["imdb"]["endpoint"] == "/predict/sentiment"
    assert listed["speech"]["labels"] == standard_models["speech"].card.labels
    detail = client.get("/models/mnist").json()
    assert detail["card"]["onnx_sha256"] == standard_models["mnist"].card.onnx_sha256
    assert detail["status"] == "ready" and detail["version"] == "1"
    assert [v["state"] for v in detail["versions"]] == ["READY"]
    runtime = detail["runtime"]["1"]
    assert runtime["providers"] == ["CPUExecutionProvider"]
    assert runtime["batching"]["max_batch_size"] == 8
    assert runtime["load_seconds"] is not None and runtime["warmup_seconds"] is not None
    assert runtime["batch_buckets"] == [1, 2, 4, 8]


def test_metrics_are_exposed(client: httpx.Client) -> None:
    client.post("/predict/sentiment", json={"text": "great"})
    client.post("/predict/sentiment", json={"text": ""})
    text = client.get("/metrics").text
    assert (
        'sms_requests_total{model="imdb",route="/predict/sentiment",status="200",version="1"}'
        in text
    )
    assert (
        'sms_requests_total{model="imdb",route="/predict/sentiment",status="422",version="1"}'
        in text
    )
    assert 'sms_request_duration_seconds_bucket{le="0.1",model="imdb"' in text
    for name in ("sms_queue_wait_seconds", "sms_batch_size", "sms_batch_compute_seconds"):
        count = _sample(text, f'{name}_count{{model="imdb",version="1"}}')
        assert count >= 1, name
    assert 'sms_queue_depth{model="imdb",version="1"} 0.0' in text
    assert 'sms_rejections_total{model="imdb",reason="queue_full",version="1"}' in text
    assert (
        'sms_model_execution_provider{model="imdb",provider="CPUExecutionProvider",version="1"} 1.0'
        in text
    )
    assert 'sms_model_ready{model="speech",version="1"} 1.0' in text


def _sample(text: str, series: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(series))
    return float(line.rsplit(" ", 1)[1])


def test_docs_describe_every_endpoint_with_upload_widgets(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/predict/image", "/predict/speech"):
        body = paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        # Swagger UI shows a file picker for `format: binary` (a text box without it).
        assert body["properties"]["files"]["items"]["format"] == "binary"
        assert body["required"] == ["files"]
    sentiment = paths["/predict/sentiment"]["post"]["requestBody"]["content"]["application/json"]
    assert {"text", "texts", "model", "top_k"} <= set(sentiment["schema"]["properties"])
    assert sentiment["schema"]["examples"][0]["text"]
    for path in ("/predict/image", "/predict/sentiment", "/predict/speech"):
        answer = paths[path]["post"]["responses"]["200"]["content"]["application/json"]
        assert answer["schema"]["$ref"].endswith("Response")  # documented answer shape
    for path in ("/models", "/models/{name}", "/healthz", "/readyz", "/metrics"):
        assert paths[path]["get"]["summary"]
    assert "/noop/image" not in paths  # benchmark routes are off by default
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
