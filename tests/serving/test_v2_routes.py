"""The Open Inference Protocol routes (app/http/v2_routes.py): tritonclient's HTTP clients,
unchanged, against the real server over HTTP on the committed models and real test items."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from data_skips import data_dir, needs_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_factory import image_bytes, image_model
from PIL import Image
from serving_harness import COMMITTED_MODELS, running_server, settings_for
from tritonclient.utils import InferenceServerException

from app.card import ModelCard
from app.serving.repository import read_model

NAMES = ("mnist", "cifar10", "imdb", "speech")
DATA_DIR = data_dir()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    settings = settings_for(COMMITTED_MODELS, max_batch_size=32, max_items=128)
    with running_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[Any]:
    triton_client = triton.InferenceServerClient(base_url.removeprefix("http://"))
    yield triton_client
    triton_client.close()


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as plain:
        yield plain


def card(name: str) -> ModelCard:
    """The card of the latest committed version of `name`."""
    folder = read_model(COMMITTED_MODELS, name)
    assert folder is not None and folder.versions, name
    return ModelCard.load(folder.versions[max(folder.versions, key=int)].directory)


def served_version(client: Any, name: str) -> str:
    """The version the server serves by default (the last listed)."""
    return client.get_model_metadata(name)["versions"][-1]


def floor(name: str, samples: int) -> float:
    """The card's test accuracy less three binomial standard errors and 2 points of slack
    (as tests/serving/test_committed_models.py)."""
    metric = card(name).metric("accuracy")
    assert metric is not None
    value = metric.value
    return value - 3 * float(np.sqrt(value * (1 - value) / samples)) - 0.02


def bytes_input(items: list[bytes] | list[str], binary: bool = True) -> Any:
    tensor = triton.InferInput("input", [len(items)], "BYTES")
    tensor.set_data_from_numpy(np.array(items, dtype=np.object_), binary_data=binary)
    return tensor


def labels_of(result: Any) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label").tolist()]


def accuracy(predicted: list[str], truth: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


def mnist_digits(count: int) -> tuple[np.ndarray, list[str]]:
    images = needs_data(DATA_DIR / "mnist" / "t10k-images-idx3-ubyte.gz")
    raw_labels = gzip.decompress((DATA_DIR / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    digits = np.frombuffer(gzip.decompress(images.read_bytes())[16:], np.uint8)
    return digits.reshape(-1, 28, 28)[:count], [str(v) for v in raw_labels[8 : 8 + count]]


# -- server and model metadata ----------------------------------------------------------------


def test_server_is_live_ready_and_describes_itself(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert {"binary_tensor_data", "model_repository"} <= set(metadata["extensions"])


def test_model_metadata_lists_both_ways_in(client: Any) -> None:
    metadata = client.get_model_metadata("mnist")
    assert metadata["name"] == "mnist"
    assert metadata["platform"] == "onnxruntime_onnx"
    assert len(metadata["versions"]) >= 1
    assert metadata["inputs"] == [
        {"name": "input", "datatype": "BYTES", "shape": [-1]},
        {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]},
    ]
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probability", "datatype": "FP32", "shape": [-1]},
        {"name": "abstain", "datatype": "BOOL", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        # the graph's own further outputs (the tensor way in returns them too)
        *(
            [{"name": "ood_score", "datatype": "FP32", "shape": [-1]}]
            if card("mnist").ood is not None
            else []
        ),
    ]
    imdb_version = served_version(client, "imdb")
    assert client.get_model_metadata("imdb", model_version=imdb_version)["inputs"][1] == {
        "name": "token_ids",
        "datatype": "INT64",
        "shape": [-1, -1],
    }
    assert client.is_model_ready("speech")
    assert client.is_model_ready("speech", model_version=served_version(client, "speech"))
    assert not client.is_model_ready("no-such-model")
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("mnist", model_version="999")
    assert caught.value.status() == "404"


# -- the raw way in: real items, the right labels -----------------------------------------------


def test_mnist_digits_as_png_bytes(client: Any) -> None:
    digits, truth = mnist_digits(100)
    result = client.infer("mnist", [bytes_input([image_bytes(d) for d in digits])])
    assert accuracy(labels_of(result), truth) >= floor("mnist", 100)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (100, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(result.as_numpy("probability"), probabilities.max(axis=1), atol=1e-6)
    threshold = card("mnist").calibration.abstain_threshold
    assert (
        result.as_numpy("abstain").tolist() == (result.as_numpy("probability") < threshold).tolist()
    )


def test_cifar10_images_as_png_bytes(client: Any) -> None:
    grid = needs_data(DATA_DIR / "cifar10" / "test_00.webp")
    classes = (DATA_DIR / "cifar10" / "classes.txt").read_text().split()
    truth = [
        classes[int(t)]
        for t in (DATA_DIR / "cifar10" / "test_labels.txt").read_text().split()[:100]
    ]
    pixels = np.asarray(Image.open(grid).convert("RGB"))
    tiles = pixels.reshape(25, 32, 40, 32, 3).transpose(0, 2, 1, 3, 4).reshape(1000, 32, 32, 3)
    result = client.infer("cifar10", [bytes_input([image_bytes(tiles[i]) for i in range(100)])])
    assert accuracy(labels_of(result), truth) >= floor("cifar10", 100)


def test_speech_clips_as_flac_bytes(client: Any) -> None:
    root = needs_data(DATA_DIR / "speech_commands")
    clips, truth = [], []
    for word in ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"):
        for clip in sorted((root / word).glob("*.flac"))[-4:]:
            clips.append(clip.read_bytes())
            truth.append(word)
    result = client.infer("speech", [bytes_input(clips)])
    assert accuracy(labels_of(result), truth) >= floor("speech", len(truth))
    assert result.as_numpy("probabilities").shape == (len(truth), len(card("speech").labels))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_imdb_reviews_as_texts(client: Any, binary: bool) -> None:
    path = needs_data(DATA_DIR / "imdb" / "test.jsonl.gz")
    with gzip.open(path, "rt") as lines:
        reviews = [json.loads(line) for _, line in zip(range(2000), lines, strict=False)]
    sample = [reviews[i] for i in np.random.default_rng(0).choice(len(reviews), 60, replace=False)]
    truth = ["positive" if r["label"] == 1 else "negative" for r in sample]
    texts = [r["text"][:5000] for r in sample]
    result = client.infer("imdb", [bytes_input(texts, binary=binary)])
    assert accuracy(labels_of(result), truth) >= floor("imdb", 60)


def test_a_subset_of_outputs_in_the_order_asked_with_id_and_version(client: Any) -> None:
    digits, truth = mnist_digits(4)
    version = served_version(client, "mnist")
    outputs = [
        triton.InferRequestedOutput("probability", binary_data=False),
        triton.InferRequestedOutput("label", binary_data=True),
    ]
    result = client.infer(
        "mnist",
        [bytes_input([image_bytes(d) for d in digits])],
        model_version=version,
        outputs=outputs,
        request_id="digits-4",
    )
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["probability", "label"]
    assert response["id"] == "digits-4"
    assert response["model_version"] == version
    assert result.as_numpy("abstain") is None
    assert labels_of(result) == truth  # four clear test digits


# -- the tensor way in --------------------------------------------------------------------------


def test_mnist_fp32_tensor_input(client: Any) -> None:
    digits, truth = mnist_digits(100)
    pixels = (digits.astype(np.float32) / 255)[:, None]
    tensor = triton.InferInput("image", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    result = client.infer("mnist", [tensor])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (100, 10)
    labels = card("mnist").labels
    assert accuracy([labels[i] for i in probabilities.argmax(axis=1)], truth) >= floor("mnist", 100)


# -- batching: concurrent V2 requests share batches ------------------------------------------------


def test_async_client_requests_batch_together(base_url: str, http: httpx.Client) -> None:
    digits, truth = mnist_digits(64)

    async def ask_all() -> list[list[str]]:
        aio = triton_aio.InferenceServerClient(base_url.removeprefix("http://"), conn_limit=64)
        try:
            results = await asyncio.gather(
                *(aio.infer("mnist", [bytes_input([image_bytes(d)])]) for d in digits)
            )
        finally:
            await aio.close()
        return [labels_of(r) for r in results]

    before = batches_over_one(http)
    answers = asyncio.run(ask_all())
    assert accuracy([a[0] for a in answers], truth) >= floor("mnist", 64)
    assert batches_over_one(http) > before


def batches_over_one(http: httpx.Client) -> float:
    """mnist batches of more than one item so far, from /metrics."""
    text = http.get("/metrics").text
    pattern = r'sms_batch_size_bucket\{le="([^"]+)",model="mnist",version="\d+"\} (\S+)'
    buckets = dict(re.findall(pattern, text))
    return float(buckets["+Inf"]) - float(buckets["1.0"])


# -- errors: 4xx in the V2 shape -------------------------------------------------------------------


def v2_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return body["error"]


def test_bad_requests_are_4xx_in_the_v2_shape(http: httpx.Client) -> None:
    infer = "/v2/models/mnist/infer"
    assert "not valid JSON" in v2_error(http.post(infer, content=b'{"inputs": ['), 400)
    wrong_type = {"name": "image", "datatype": "FP64", "shape": [1, 1, 28, 28], "data": [0] * 784}
    assert "must be FP32" in v2_error(http.post(infer, json={"inputs": [wrong_type]}), 400)
    wrong_shape = {"name": "image", "datatype": "FP32", "shape": [1, 28, 28], "data": [0] * 784}
    assert "has shape" in v2_error(http.post(infer, json={"inputs": [wrong_shape]}), 400)
    element = b"\x01\x00\x00\x00x"
    raw = {"name": "input", "datatype": "BYTES", "shape": [1]}
    header = orjson.dumps({"inputs": [raw | {"parameters": {"binary_data_size": len(element)}}]})
    lying = {"Inference-Header-Content-Length": str(len(header) + 3)}
    assert "not valid JSON" in v2_error(
        http.post(infer, content=header + element, headers=lying), 400
    )
    unknown_output = {"inputs": [wrong_type | {"datatype": "FP32"}], "outputs": [{"name": "x"}]}
    assert "unknown output 'x'" in v2_error(http.post(infer, json=unknown_output), 400)
    assert "mnist-9" in v2_error(http.post("/v2/models/mnist-9/infer", json={"inputs": []}), 404)
    not_an_image = {"name": "input", "datatype": "BYTES", "shape": [1], "data": ["hello"]}
    assert "input[0]" in v2_error(http.post(infer, json={"inputs": [not_an_image]}), 400)


@st.composite
def infer_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A random tensor for mnist: sometimes the right name, datatype or shape, mostly not."""
    name = draw(st.sampled_from(["input", "image", "pixels"]))
    datatype = draw(st.sampled_from(["BYTES", "FP32", "FP64", "INT64", "UINT8", "BOOL"]))
    right = draw(st.booleans())
    shape = (
        [draw(st.integers(1, 3)), 1, 28, 28]
        if right
        else draw(st.lists(st.integers(0, 4), min_size=0, max_size=4))
    )
    count = int(np.prod(shape))
    if datatype == "BYTES":
        data: list[Any] = draw(st.lists(st.text(max_size=8), min_size=count, max_size=count))
    elif datatype == "BOOL":
        data = [draw(st.booleans())] * count
    else:
        data = [draw(st.integers(0, 255))] * count
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=infer_bodies())
def test_random_tensors_never_get_a_5xx(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.post("/v2/models/mnist/infer", json=body)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        v2_error(response, response.status_code)


def test_docs_show_the_v2_routes_with_examples(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/v2", "/v2/health/ready", "/v2/models/{name}/versions/{version}/ready"):
        assert path in paths
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["name"]
    examples = infer["requestBody"]["content"]["application/json"]["examples"]
    assert examples["text"]["value"]["inputs"][0]["datatype"] == "BYTES"
    assert examples["tensor"]["value"]["inputs"][0]["datatype"] == "FP32"


# -- the repository extension through tritonclient -----------------------------------------------


def test_repository_index_load_and_unload_through_tritonclient(tmp_path: Path) -> None:
    image_model(tmp_path, "digits")
    settings = settings_for(tmp_path, model_control="explicit")
    with running_server(settings) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        index = client.get_model_repository_index()
        assert {"name": "digits", "version": "1", "state": "READY", "reason": ""} in index
        client.unload_model("digits")
        assert not client.is_model_ready("digits")
        entry = next(e for e in client.get_model_repository_index() if e["name"] == "digits")
        assert entry["state"] == "UNAVAILABLE" and entry["reason"] == "unloaded"
        client.load_model("digits")
        assert client.is_model_ready("digits")
        assert client.is_model_ready("digits", model_version="1")
        with pytest.raises(InferenceServerException, match="no model"):
            client.load_model("nope")
