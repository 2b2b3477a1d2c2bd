"""Shared test fixtures: build model repositories with tests/model_factory.py and serve them
with the real app (uvicorn on a free loopback port, lifespan included) in a background thread.

This directory is put on sys.path by pytest (rootdir conftest), so tests import the factory as
`import model_factory`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
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


@pytest.fixture(scope="session")
def serve() -> Callable[..., object]:
    """`with serve(models_dir, **settings) as base_url:` — a fresh server per use."""

    def start(models_dir: Path, **overrides: object):  # type: ignore[no-untyped-def]
        return running_server(settings_for(models_dir, **overrides))

    return start


@pytest.fixture
def client_for() -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(base_url: str) -> httpx.Client:
        client = httpx.Client(base_url=base_url, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def standard_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """mnist, cifar10, imdb and speech test doubles (tests/model_factory.py) in one repository."""
    import model_factory

    return model_factory.standard_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def standard_url(standard_models: dict) -> Iterator[str]:
    """One server over the standard test repository, shared by the tests that only read."""
    models_dir = next(iter(standard_models.values())).directory.parent
    with running_server(settings_for(models_dir, enable_benchmark_routes=False)) as url:
        yield url


@pytest.fixture
def client(standard_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standard_url, timeout=30) as http:
        yield http
