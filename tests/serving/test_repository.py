"""Broken models are reported with the file and the reason: by default the service refuses to
start; with serve_partial the healthy models serve and the broken ones are listed."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from model_factory import digit_strokes, image_bytes, image_model, rewrite_card, text_model
from serving_harness import running_server, settings_for

from app.card import sha256_of
from app.main import StartupError, create_app


def start_app(models_dir: Path, **overrides: object) -> None:
    """Run the real app's lifespan start-up (and shut it down again if it succeeds)."""
    app = create_app(settings_for(models_dir, **overrides))

    async def lifespan() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(lifespan())


def missing_onnx(model_dir: Path) -> str:
    (model_dir / "model.onnx").unlink()
    return "missing ONNX file"


def corrupt_onnx(model_dir: Path) -> str:
    onnx_path = model_dir / "model.onnx"
    onnx_path.write_bytes(b"\x08\x07garbage" * 100)
    rewrite_card(model_dir, onnx_sha256=sha256_of(onnx_path))  # the card vouches for it
    return "ONNX Runtime cannot load it"


def changed_onnx(model_dir: Path) -> str:
    with (model_dir / "model.onnx").open("ab") as f:
        f.write(b"\0")
    return "does not match the card"


def wrong_shape_in_card(model_dir: Path) -> str:
    card = json.loads((model_dir / "card.json").read_text())
    card["inputs"][0]["shape"] = ["batch", 1, 32, 32]
    card["preprocessing"]["height"] = card["preprocessing"]["width"] = 32
    card["preprocessing"]["digit_centering"] = False
    (model_dir / "card.json").write_text(json.dumps(card))
    return "axis 2 is 28 in the graph, card says 32"


def wrong_labels(model_dir: Path) -> str:
    rewrite_card(model_dir, labels=["a", "b", "c"])
    return "the card lists 3 labels"


def unreadable_card(model_dir: Path) -> str:
    (model_dir / "card.json").write_text("{not json")
    return "invalid card"


def card_missing_a_field(model_dir: Path) -> str:
    card = json.loads((model_dir / "card.json").read_text())
    del card["calibration"]
    (model_dir / "card.json").write_text(json.dumps(card))
    return "calibration"


BREAKAGES: list[Callable[[Path], str]] = [
    missing_onnx,
    corrupt_onnx,
    changed_onnx,
    wrong_shape_in_card,
    wrong_labels,
    unreadable_card,
    card_missing_a_field,
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    image_model(tmp_path, "mnist")
    text_model(tmp_path, "imdb")
    return tmp_path


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: b.__name__)
def test_broken_model_stops_start_up_naming_file_and_reason(repo: Path, breakage) -> None:
    reason = breakage(repo / "mnist")
    with pytest.raises(StartupError) as raised:
        start_app(repo)
    message = str(raised.value)
    assert str(repo / "mnist") in message
    assert reason in message
    assert "imdb" not in message  # the healthy model is not blamed


def test_fixed_batch_axis_is_refused(tmp_path: Path) -> None:
    image_model(tmp_path, "mnist", fixed_batch=4)
    with pytest.raises(StartupError, match="fixed at 4"):
        start_app(tmp_path)


def test_empty_repository_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="no models found"):
        start_app(tmp_path / "nothing-here")


def test_cuda_policy_fails_fast_without_cuda(repo: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(StartupError, match="SMS_EXECUTION_PROVIDER=cuda"):
        start_app(repo, execution_provider="cuda")


def test_serve_partial_serves_the_healthy_and_lists_the_broken(repo: Path) -> None:
    reason = changed_onnx(repo / "mnist")
    shutil.copytree(repo / "imdb", repo / "imdb2")  # a card whose name differs from its folder
    with (
        running_server(settings_for(repo, serve_partial=True)) as url,
        httpx.Client(base_url=url) as http,
    ):
        ready = http.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["models"] == {"imdb": "ready", "imdb2": "broken", "mnist": "broken"}
        assert any(str(repo / "mnist") in p and reason in p for p in body["problems"])
        assert any("card name 'imdb' != folder name 'imdb2'" in p for p in body["problems"])
        listed = {m["name"]: m for m in http.get("/models").json()["models"]}
        assert listed["mnist"]["status"] == "broken" and reason in listed["mnist"]["error"]
        assert http.get("/models/mnist").json()["error"] == listed["mnist"]["error"]
        assert http.post("/predict/sentiment", json={"text": "great"}).status_code == 200
        refused = http.post(
            "/predict/image", files={"files": ("7.png", image_bytes(digit_strokes()), "image/png")}
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "model_not_ready"
        assert reason in refused.json()["error"]["message"]


def test_readiness_is_503_when_nothing_can_serve(repo: Path) -> None:
    changed_onnx(repo / "mnist")
    changed_onnx(repo / "imdb")
    with running_server(settings_for(repo, serve_partial=True)) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert len(ready.json()["problems"]) == 2
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_tokenizer_that_does_not_match_its_card_is_refused(tmp_path: Path) -> None:
    built = text_model(tmp_path, "imdb")
    tokenizer = built.directory / "tokenizer.json"
    prep = built.card.preprocessing.model_copy(update={"tokenizer_sha256": sha256_of(tokenizer)})
    rewrite_card(built.directory, preprocessing=prep.model_dump())
    start_app(tmp_path)  # the hash matches: serves
    tokenizer.write_text(tokenizer.read_text().replace("}", ', "extra": 1}', 1))
    with pytest.raises(StartupError, match="tokenizer_sha256"):
        start_app(tmp_path)
