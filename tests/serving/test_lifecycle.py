"""Model versions, per-model config, and live load / reload / unload over HTTP (Triton's
repository extension), against the real app."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_factory import digit_strokes, image_bytes, image_model, rewrite_card
from serving_harness import running_server, settings_for

from app.card import sha256_of

PNG = image_bytes(digit_strokes())


def add_version(models_dir: Path, name: str, version: int, seed: int, **kwargs: object) -> Path:
    """Build a small image model and place it as models_dir/name/version/."""
    staging = models_dir.parent / f"staging-{name}-{version}-{seed}"
    built = image_model(staging, name, seed=seed, **kwargs)  # type: ignore[arg-type]
    target = models_dir / name / str(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built.directory), str(target))
    shutil.rmtree(staging)
    return target


def predict(http: httpx.Client, model: str = "digits", **form: str) -> httpx.Response:
    return http.post(
        "/predict/image",
        files={"files": ("d.png", PNG, "image/png")},
        data={"model": model, **form},
    )


def index(http: httpx.Client) -> dict[tuple[str, str], dict]:
    entries = http.post("/v2/repository/index").json()
    return {(e["name"], e["version"]): e for e in entries}


def metric(http: httpx.Client, series: str) -> float:
    line = next((x for x in http.get("/metrics").text.splitlines() if x.startswith(series)), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    add_version(models, "digits", 1, seed=1)
    add_version(models, "digits", 2, seed=2)
    add_version(models, "digits", 3, seed=3)
    return models


def test_latest_version_serves_by_default_and_every_answer_names_it(repo: Path) -> None:
    with running_server(settings_for(repo)) as url, httpx.Client(base_url=url) as http:
        assert predict(http).json()["version"] == "3"
        detail = http.get("/models/digits").json()
        assert detail["version"] == "3" and detail["version_policy"] == "latest 1"
        states = {v["version"]: v["state"] for v in detail["versions"]}
        assert states == {"1": "UNAVAILABLE", "2": "UNAVAILABLE", "3": "READY"}
        older = predict(http, version="1")
        assert older.status_code == 503 and "version policy" in older.json()["error"]["message"]
        missing = predict(http, version="9")
        assert (
            missing.status_code == 404 and "versions: 1, 2, 3" in missing.json()["error"]["message"]
        )
        assert predict(http, version="../1").status_code == 404


@pytest.mark.parametrize(
    ("policy", "served"),
    [
        ({"all": {}}, ["1", "2", "3"]),
        ({"latest": {"num_versions": 2}}, ["2", "3"]),
        ({"specific": {"versions": [1, 3]}}, ["1", "3"]),
    ],
)
def test_version_policies(repo: Path, policy: dict, served: list[str]) -> None:
    (repo / "digits" / "config.json").write_text(json.dumps({"version_policy": policy}))
    with running_server(settings_for(repo)) as url, httpx.Client(base_url=url) as http:
        for version in served:
            answer = predict(http, version=version)
            assert answer.status_code == 200 and answer.json()["version"] == version
        assert predict(http).json()["version"] == served[-1]
        ready = [k[1] for k, e in index(http).items() if e["state"] == "READY"]
        assert ready == served


def test_flat_folder_is_version_one(tmp_path: Path) -> None:
    image_model(tmp_path, "flat")
    with running_server(settings_for(tmp_path)) as url, httpx.Client(base_url=url) as http:
        assert predict(http, "flat").json()["version"] == "1"
        assert index(http)[("flat", "1")]["state"] == "READY"


def test_per_model_config_sets_the_batch_size(tmp_path: Path) -> None:
    add_version(tmp_path, "small", 1, seed=1)
    add_version(tmp_path, "big", 1, seed=2)
    (tmp_path / "small" / "config.json").write_text(
        json.dumps({"max_batch_size": 2, "max_delay_ms": 50, "instances": 2})
    )
    settings = settings_for(tmp_path, max_batch_size=8, max_delay_ms=50)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        files = [("files", (f"{i}.png", PNG, "image/png")) for i in range(8)]
        for model in ("small", "big"):
            answer = http.post("/predict/image", files=files, data={"model": model})
            assert answer.status_code == 200, answer.text
        small = http.get("/models/small").json()["runtime"]["1"]
        assert small["batching"]["max_batch_size"] == 2 and small["instances"] == 2
        assert http.get("/models/big").json()["runtime"]["1"]["batching"]["max_batch_size"] == 8
        # Eight items in batches of at most two: four or more batches, none above two.
        batches = metric(http, 'sms_batch_size_count{model="small",version="1"}')
        at_most_two = metric(http, 'sms_batch_size_bucket{le="2.0",model="small",version="1"}')
        assert batches >= 4 and at_most_two == batches
        assert metric(http, 'sms_batch_size_bucket{le="4.0",model="big",version="1"}') == 0


def test_invalid_config_breaks_only_its_model(tmp_path: Path) -> None:
    add_version(tmp_path, "good", 1, seed=1)
    add_version(tmp_path, "bad", 1, seed=2)
    (tmp_path / "bad" / "config.json").write_text('{"max_batch_size": 0, "colour": "red"}')
    settings = settings_for(tmp_path, serve_partial=True)
    with running_server(settings) as url, httpx.Client(base_url=url) as http:
        assert predict(http, "good").status_code == 200
        listed = {m["name"]: m for m in http.get("/models").json()["models"]}
        error = listed["bad"]["error"]
        assert listed["bad"]["status"] == "broken"
        assert str(tmp_path / "bad" / "config.json") in error
        assert "max_batch_size" in error and "colour" in error
        refused = predict(http, "bad")
        assert refused.status_code == 503 and "config.json" in refused.json()["error"]["message"]


def test_repository_routes_are_refused_without_model_control(repo: Path) -> None:
    with running_server(settings_for(repo)) as url, httpx.Client(base_url=url) as http:
        refused = http.post("/v2/repository/models/digits/load")
        assert refused.status_code == 403
        assert "SMS_MODEL_CONTROL" in refused.json()["error"]
        assert http.post("/v2/repository/models/digits/unload").status_code == 403
        assert index(http)[("digits", "3")]["state"] == "READY"  # the index is read-only


def test_load_reload_and_unload_over_http(tmp_path: Path) -> None:
    models = tmp_path / "models"
    add_version(models, "digits", 1, seed=1)
    settings = settings_for(models, model_control="explicit")
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert predict(http).json()["version"] == "1"
        add_version(models, "digits", 2, seed=2)
        assert predict(http).json()["version"] == "1"  # nothing changes until asked
        loaded = http.post("/v2/repository/models/digits/load")
        assert loaded.status_code == 200, loaded.text
        assert predict(http).json()["version"] == "2"
        entries = index(http)
        assert entries[("digits", "2")]["state"] == "READY"
        assert entries[("digits", "1")]["state"] == "UNAVAILABLE"
        # A model added to the repository while serving.
        add_version(models, "letters", 1, seed=3)
        assert predict(http, "letters").status_code == 404
        assert http.post("/v2/repository/models/letters/load").status_code == 200
        assert predict(http, "letters").json()["version"] == "1"
        # Unload: the model stays listed, unavailable, and answers 503.
        assert http.post("/v2/repository/models/digits/unload").status_code == 200
        gone = predict(http)
        assert gone.status_code == 503 and "unloaded" in gone.json()["error"]["message"]
        assert index(http)[("digits", "2")] == {
            "name": "digits",
            "version": "2",
            "state": "UNAVAILABLE",
            "reason": "unloaded",
        }
        assert http.get("/readyz").status_code == 200  # an unloaded model is not a fault
        assert http.post("/v2/repository/models/digits/load").status_code == 200
        assert predict(http).json()["version"] == "2"
        text = http.get("/metrics").text
        assert 'sms_model_loads_total{model="digits",outcome="loaded"} 3.0' in text
        assert 'sms_model_unloads_total{model="digits"} 2.0' in text


def test_broken_new_version_leaves_the_old_one_serving(tmp_path: Path) -> None:
    models = tmp_path / "models"
    add_version(models, "digits", 1, seed=1)
    settings = settings_for(models, model_control="explicit")
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        broken = add_version(models, "digits", 2, seed=2)
        (broken / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
        rewrite_card(broken, onnx_sha256=sha256_of(broken / "model.onnx"))
        refused = http.post("/v2/repository/models/digits/load")
        assert refused.status_code == 400
        assert str(broken / "model.onnx") in refused.json()["error"]
        assert predict(http).json()["version"] == "1"
        entries = index(http)
        assert entries[("digits", "1")]["state"] == "READY"
        assert entries[("digits", "2")]["state"] == "UNAVAILABLE"
        assert "ONNX Runtime cannot load it" in entries[("digits", "2")]["reason"]
        versions = {v["version"]: v for v in http.get("/models/digits").json()["versions"]}
        assert versions["2"]["reason"] == entries[("digits", "2")]["reason"]
        # A sha256 that does not match the card: same outcome, its own reason.
        (broken / "model.onnx").write_bytes(b"other bytes")
        assert http.post("/v2/repository/models/digits/load").status_code == 400
        assert "sha256" in index(http)[("digits", "2")]["reason"]
        # Rolling back = removing the bad folder and loading again.
        shutil.rmtree(broken)
        assert http.post("/v2/repository/models/digits/load").status_code == 200
        assert ("digits", "2") not in index(http)
        assert predict(http).json()["version"] == "1"


def test_poll_mode_picks_up_a_new_version_and_a_removed_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    add_version(models, "digits", 1, seed=1)
    add_version(models, "other", 1, seed=2)
    settings = settings_for(models, model_control="poll", model_poll_s=0.2)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert predict(http).json()["version"] == "1"
        add_version(models, "digits", 2, seed=3)
        shutil.rmtree(models / "other")
        deadline = time.monotonic() + 20
        while predict(http).json()["version"] != "2":
            assert time.monotonic() < deadline, "poll did not pick up version 2"
            time.sleep(0.1)
        while "other" in {m["name"] for m in http.get("/models").json()["models"]}:
            assert time.monotonic() < deadline, "poll did not drop the removed model"
            time.sleep(0.1)
        assert predict(http, "other").status_code == 404


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v2/repository/models/../load",
        "/v2/repository/models/..%2F..%2Fetc/load",
        "/v2/repository/models/%2Fetc%2Fpasswd/load",
        "/v2/repository/models/.hidden/load",
        "/v2/repository/models/nope/load",
        "/v2/repository/models/nope/unload",
    ],
)
def test_a_model_name_is_a_folder_of_the_repository_and_nothing_else(
    tmp_path: Path, raw_path: str
) -> None:
    models = tmp_path / "models"
    add_version(models, "digits", 1, seed=1)
    # A real model right outside the repository: it must never be loaded.
    add_version(tmp_path, "etc", 1, seed=2)
    settings = settings_for(models, model_control="explicit")
    with running_server(settings) as url:
        host, port = url.removeprefix("http://").split(":")
        status = raw_post(host, int(port), raw_path)
        assert status in (400, 404), (raw_path, status)
        with httpx.Client(base_url=url) as http:
            assert set(m["name"] for m in http.get("/models").json()["models"]) == {"digits"}


def raw_post(host: str, port: int, path: str) -> int:
    """POST `path` exactly as written (httpx would normalise the dots away)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n"
        sock.sendall(head.encode() + b"\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_reload_under_load_fails_no_request(tmp_path: Path) -> None:
    """32 clients for 12 s; a new version is loaded after 4 s: no request fails, every answer
    before the load began came from version 1 and every request sent after it returned was
    answered by version 2."""
    models = tmp_path / "models"
    add_version(models, "digits", 1, seed=1)
    settings = settings_for(models, model_control="explicit", max_batch_size=16)
    with running_server(settings) as url:
        outcome = asyncio.run(_load_while_reloading(url, models, clients=32, seconds=12))
    print(
        f"\nreload under load: {outcome['requests']} requests, {outcome['failures']} failed; "
        f"p99 before the swap {outcome['p99_before_ms']:.1f} ms, "
        f"during it {outcome['p99_during_ms']:.1f} ms; load took {outcome['load_s']:.2f} s"
    )
    assert outcome["failures"] == 0, outcome["statuses"]
    assert set(outcome["answered_before"]) == {"1"}, "version 2 answered before the load"
    assert set(outcome["sent_after"]) == {"2"}, "version 1 answered after the load returned"


async def _load_while_reloading(url: str, models: Path, clients: int, seconds: float) -> dict:
    results: list[tuple[float, float, int, str]] = []  # (sent, latency, status, version)
    stop = time.monotonic() + seconds
    swap: dict[str, float] = {}

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            sent = time.monotonic()
            try:
                answer = await http.post(
                    "/predict/image",
                    files={"files": ("d.png", PNG, "image/png")},
                    data={"model": "digits"},
                )
                version = answer.json().get("version", "") if answer.status_code == 200 else ""
                results.append((sent, time.monotonic() - sent, answer.status_code, version))
            except httpx.HTTPError as exc:
                results.append((sent, time.monotonic() - sent, 0, type(exc).__name__))

    async def reload(http: httpx.AsyncClient) -> None:
        await asyncio.sleep(seconds / 3)
        await asyncio.to_thread(add_version, models, "digits", 2, 2)
        swap["start"] = time.monotonic()
        answer = await http.post("/v2/repository/models/digits/load")
        swap["end"] = time.monotonic()
        assert answer.status_code == 200, answer.text

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        await asyncio.gather(reload(http), *(client(http) for _ in range(clients)))
    results.sort()

    def p99(rows: list[tuple[float, float, int, str]]) -> float:
        return float(np.percentile([r[1] for r in rows], 99) * 1000) if rows else 0.0

    before = [r for r in results if r[0] < swap["start"]]
    during = [r for r in results if swap["start"] <= r[0] <= swap["end"]]
    return {
        "requests": len(results),
        "failures": sum(r[2] != 200 for r in results),
        "statuses": sorted({r[2] for r in results}),
        "answered_before": [r[3] for r in results if r[0] + r[1] < swap["start"]],
        "sent_after": [r[3] for r in results if r[0] > swap["end"]],
        "p99_before_ms": p99(before),
        "p99_during_ms": p99(during),
        "load_s": swap["end"] - swap["start"],
    }
