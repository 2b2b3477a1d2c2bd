"""Which ONNX file a version serves: SMS_PRECISION and a model's config.json, over the committed
models (which carry int8 copies); a missing or corrupt int8 copy never serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
from model_factory import image_model
from serving_harness import COMMITTED_MODELS, running_server, settings_for

from app.card import ModelCard, version_dirs


def copy_model(name: str, models: Path) -> Path:
    """The newest committed version of `name` that has an int8 copy, as models/name/1/."""
    with_int8 = [
        path
        for _, path in sorted(version_dirs(COMMITTED_MODELS / name).items())
        if ModelCard.load(path).int8 is not None
    ]
    assert with_int8, f"no committed version of {name} has an int8 copy"
    source = with_int8[-1]
    target = models / name / "1"
    shutil.copytree(source, target)
    return target


def served(http: httpx.Client, name: str) -> dict:
    detail = http.get(f"/models/{name}").json()
    return detail["runtime"].get(detail["version"] or "", {})


def test_global_precision_and_per_model_config(tmp_path: Path) -> None:
    copy_model("mnist", tmp_path)
    copy_model("cifar10", tmp_path)
    settings = settings_for(tmp_path, precision="fp32")
    with running_server(settings) as url, httpx.Client(base_url=url) as http:
        assert served(http, "mnist")["precision"] == "fp32"
        assert served(http, "cifar10")["onnx_file"] == "model.onnx"
    (tmp_path / "cifar10" / "config.json").write_text(json.dumps({"precision": "int8"}))
    with running_server(settings) as url, httpx.Client(base_url=url) as http:
        assert served(http, "mnist")["precision"] == "fp32"
        assert served(http, "cifar10")["precision"] == "int8"
        assert served(http, "cifar10")["onnx_file"] == "model.int8.onnx"


def test_int8_required_by_config_without_a_copy_is_unavailable(tmp_path: Path) -> None:
    image_model(tmp_path, "plain")
    image_model(tmp_path, "other", seed=1)
    (tmp_path / "plain" / "config.json").write_text(json.dumps({"precision": "int8"}))
    settings = settings_for(tmp_path, serve_partial=True, precision="int8")
    with running_server(settings) as url, httpx.Client(base_url=url) as http:
        listed = {m["name"]: m for m in http.get("/models").json()["models"]}
        assert listed["plain"]["status"] == "broken"
        assert "no int8 model" in listed["plain"]["error"]
        # SMS_PRECISION=int8 alone serves fp32 where a card has no int8 copy.
        assert listed["other"]["status"] == "ready"
        assert served(http, "other")["precision"] == "fp32"


def test_a_corrupt_int8_copy_never_serves(tmp_path: Path) -> None:
    target = copy_model("mnist", tmp_path)
    (target / "model.int8.onnx").write_bytes(b"corrupt")
    settings = settings_for(tmp_path, serve_partial=True, precision="int8")
    with running_server(settings) as url, httpx.Client(base_url=url) as http:
        listed = {m["name"]: m for m in http.get("/models").json()["models"]}
        assert listed["mnist"]["status"] == "broken"
        assert "model.int8.onnx" in listed["mnist"]["error"]
        assert "sha256" in listed["mnist"]["error"]
