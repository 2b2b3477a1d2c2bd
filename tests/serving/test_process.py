"""The service as a process: `python -m app` serves, logs with request ids (text or JSON),
stops cleanly on SIGTERM; the serving path never imports torch; no-op routes only on demand."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from model_factory import digit_strokes, image_bytes, text_model
from serving_harness import REPO_ROOT, running_server, settings_for

TESTS_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serving_path_never_imports_torch(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("the serving path must not import torch")
        sys.meta_path.insert(0, NoTorch())

        sys.path.insert(0, {str(TESTS_DIR)!r})
        import httpx
        from model_factory import image_model, text_model
        from app.main import create_app
        from app.settings import Settings

        models = Path({str(tmp_path)!r})
        text_model(models, "imdb")
        image_model(models, "mnist")
        app = create_app(Settings(models_dir=models, _env_file=None))

        async def main():
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    response = await http.post("/predict/sentiment", json={{"text": "great"}})
                    assert response.status_code == 200, response.text
        asyncio.run(main())
        print("torch loaded:", "torch" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "torch loaded: False" in done.stdout


def test_python_dash_m_app_serves_logs_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    text_model(tmp_path, "imdb")
    port = free_port()
    env = {
        **os.environ,
        "SMS_MODELS_DIR": str(tmp_path),
        "SMS_PORT": str(port),
        "SMS_HOST": "127.0.0.1",
        "SMS_LOG_FORMAT": "json",
        "SMS_WORKERS": "1",  # the single-process path (tests/serving/test_processes.py: more)
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        response = httpx.post(
            f"http://127.0.0.1:{port}/predict/sentiment",
            json={"text": "great"},
            headers={"X-Request-ID": "trace-me"},
        )
        assert response.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says why.
    assert server.returncode in (0, -signal.SIGTERM), output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines[-2]["message"] == "Application shutdown complete.", output
    access = [e for e in lines if e["logger"] == "app.access" and e["request_id"] == "trace-me"]
    assert access and "POST /predict/sentiment 200" in access[0]["message"]
    assert any("ready" in e["message"] and e["logger"] == "app.main" for e in lines)
    assert all({"time", "level", "logger", "request_id", "message"} <= set(e) for e in lines)


def test_noop_routes_only_when_enabled(tmp_path: Path, standard_url: str) -> None:
    text_model(tmp_path, "imdb")
    png = image_bytes(digit_strokes())
    with httpx.Client(base_url=standard_url) as off:
        assert off.post("/noop/sentiment", json={"text": "x"}).status_code == 404
    settings = settings_for(tmp_path, enable_benchmark_routes=True)
    with running_server(settings) as url, httpx.Client(base_url=url) as http:
        image = http.post("/noop/image", files={"files": ("a.png", png, "image/png")})
        assert image.status_code == 200 and image.json() == {"ok": True, "items": 1}
        text = http.post("/noop/sentiment", json={"texts": ["a", "b"]})
        assert text.json() == {"ok": True, "items": 2}
        speech = http.post("/noop/speech", files={"files": ("a.wav", b"RIFF", "audio/wav")})
        assert speech.json() == {"ok": True, "items": 1}  # read, not decoded
        # They parse exactly like the real routes, so they refuse what those refuse.
        assert http.post("/noop/image", json={}).status_code == 415
        assert http.post("/noop/sentiment", json={"text": ""}).status_code == 422
        assert "/noop/image" in http.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_carry_the_request_id(
    tmp_path: Path, log_format: str, capfd: pytest.CaptureFixture[str]
) -> None:
    text_model(tmp_path, "imdb")
    settings = settings_for(tmp_path, access_log=True, log_format=log_format)
    with running_server(settings) as url:
        httpx.post(f"{url}/predict/sentiment", json={"text": ""}, headers={"X-Request-ID": "rid-7"})
    logged = capfd.readouterr().err
    line = next(line for line in logged.splitlines() if "POST /predict/sentiment 422" in line)
    if log_format == "json":
        assert json.loads(line)["request_id"] == "rid-7"
    else:
        assert "[rid-7]" in line
