"""Serving the real app in tests: uvicorn on a free loopback port, lifespan included, in a
background thread. Import it as `from serving_harness import running_server, settings_for`
(tests/ is on sys.path through tests/conftest.py; a module of its own, because test modules
that import from `conftest` break as soon as another test folder has a conftest too)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from app.main import create_app
from app.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMITTED_MODELS = REPO_ROOT / "models"


@contextmanager
def running_server(settings: Settings, startup_timeout: float = 60) -> Iterator[str]:
    """Serve `create_app(settings)` on 127.0.0.1:<free port>; yield its base URL."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError("server failed to start (see the log above)")
        if time.monotonic() > deadline:
            raise TimeoutError("server did not start in time")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def settings_for(models_dir: Path, **overrides: object) -> Settings:
    """Settings for a test server: the given repository, our env ignored, small limits."""
    values: dict[str, object] = {
        "models_dir": models_dir,
        "max_batch_size": 8,
        "max_delay_ms": 2.0,
        "intra_op_threads": 1,
        "access_log": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
