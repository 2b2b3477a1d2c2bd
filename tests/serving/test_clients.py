"""Clients that cannot hurt the server: API keys, metric labels that never take a value a
client chose, uploads that stall or hang up, and the cap on requests in flight."""

from __future__ import annotations

import asyncio
import logging
import re
import string
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_factory import digit_strokes, image_bytes, image_model
from serving_harness import running_server, settings_for

PNG = image_bytes(digit_strokes())


class Collected(logging.Handler):
    """Every record of the app's loggers, attached after start-up (the app's logging set-up
    replaces the root handlers, pytest's caplog among them)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Collected:
        logging.getLogger("app").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("app").removeHandler(self)


SERIES = re.compile(r"^(sms_[a-z_]+\{[^}]*\})", re.MULTILINE)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    image_model(models, "digits")
    return models


def predict(http: httpx.Client, model: str = "digits", **headers: str) -> httpx.Response:
    return http.post(
        "/predict/image",
        files={"files": ("d.png", PNG, "image/png")},
        data={"model": model},
        headers=headers,
    )


# -- API keys -------------------------------------------------------------------------------


def test_api_keys(repo: Path) -> None:
    settings = settings_for(
        repo,
        api_keys=["user-key-1"],
        admin_keys=["admin-key-9"],
        model_control="explicit",
        access_log=True,
    )
    with running_server(settings) as url, httpx.Client(base_url=url) as http, Collected() as log:
        missing = predict(http)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"]["code"] == "unauthorized"
        wrong = predict(http, Authorization="Bearer user-key-2")
        assert wrong.status_code == 401 and "wrong" in wrong.json()["error"]["message"]
        assert predict(http, Authorization="Basic dXNlci1rZXktMQ==").status_code == 401
        assert predict(http, Authorization="Bearer user-key-1").status_code == 200
        assert predict(http, Authorization="Bearer admin-key-9").status_code == 200
        assert http.get("/models").status_code == 401
        # Health, readiness, metrics, docs stay open.
        for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
            assert http.get(path).status_code == 200, path
        # The repository extension needs an admin key; its errors are in the V2 shape.
        load = "/v2/repository/models/digits/load"
        user = {"Authorization": "Bearer user-key-1"}
        admin = {"Authorization": "Bearer admin-key-9"}
        refused = http.post(load, headers=user)
        assert refused.status_code == 403 and "admin" in refused.json()["error"]
        assert http.post(load).status_code == 401
        assert http.post("/v2/repository/index", headers=user).status_code == 403
        assert http.post(load, headers=admin).status_code == 200
        assert http.post("/v2/repository/index", headers=admin).status_code == 200
    logged = "\n".join(record.getMessage() for record in log.records)
    assert "POST /predict/image 401" in logged  # the access log did run
    assert "user-key" not in logged and "admin-key" not in logged


def test_observability_can_be_protected(repo: Path) -> None:
    settings = settings_for(repo, api_keys=["k"], protect_observability=True)
    with running_server(settings) as url, httpx.Client(base_url=url) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer k"}).status_code == 200


# -- metric labels --------------------------------------------------------------------------


def series(http: httpx.Client) -> set[str]:
    return set(SERIES.findall(http.get("/metrics").text))


names = st.text(alphabet=string.printable, min_size=1, max_size=300)
path_parts = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@", min_size=1, max_size=300
)


@pytest.fixture(scope="module")
def labels_server(repo: Path):  # type: ignore[no-untyped-def]
    with running_server(settings_for(repo)) as url, httpx.Client(base_url=url) as http:
        # One request of every kind first: the series they create are the fixed set.
        predict(http, "nope")
        predict(http)
        http.post("/predict/sentiment", json={"text": "x", "model": "nope"})
        http.get("/models/nope")
        http.get("/nowhere")
        http.get("/metrics")
        http.post("/v2/repository/models/nope/load")
        http.post("/predict/image", content=b"x" * 10, headers={"Content-Type": "text/plain"})
        yield http


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(model=names, path=path_parts)
def test_client_chosen_names_never_add_metric_series(
    labels_server: httpx.Client, model: str, path: str
) -> None:
    http = labels_server
    before = series(http)
    predict(http, model)
    http.post("/predict/sentiment", json={"text": "good", "model": model})
    http.get("/models/" + path)
    http.get("/x-" + path)
    http.post("/v2/repository/models/" + path + "/load")
    added = series(http) - before
    assert not added, added


# -- stalled and abandoned uploads ----------------------------------------------------------


HEAD = (
    b"POST /predict/image HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
    b"boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; "
    b'name="files"; filename="d.png"\r\nContent-Type: image/png\r\n\r\n'
)


async def stall(host: str, port: int, count: int, hang_up: bool) -> list[tuple[bytes, float]]:
    """Open `count` connections that send headers and part of a body, then stall (or hang up
    at once). Returns each stalled connection's reply and when the server closed it."""
    opened = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(HEAD + b"\x89PNG" * 100)
        await writer.drain()
        opened.append((reader, writer))
    if hang_up:
        for _, writer in opened:
            writer.transport.abort()
        return []
    started = time.monotonic()

    async def reply(reader: asyncio.StreamReader) -> tuple[bytes, float]:
        data = await asyncio.wait_for(reader.read(), timeout=60)  # until the server closes
        return data, time.monotonic() - started

    try:
        return await asyncio.gather(*(reply(r) for r, _ in opened))
    finally:
        for _, writer in opened:
            writer.close()


def test_stalled_uploads_get_408_and_are_closed_while_others_are_served(repo: Path) -> None:
    settings = settings_for(repo, body_timeout_s=3)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        host, port = url.removeprefix("http://").split(":")

        async def scenario() -> tuple[list[tuple[bytes, float]], list[int]]:
            stalled = asyncio.create_task(stall(host, int(port), 1000, hang_up=False))
            await asyncio.sleep(1.5)  # all of them are open and stalled now
            statuses = [(await asyncio.to_thread(predict, http)).status_code for _ in range(5)]
            return await stalled, statuses

        replies, statuses = asyncio.run(scenario())
        assert statuses == [200] * 5  # others are answered while 1,000 uploads stall
        assert len(replies) == 1000
        for data, closed_after in replies:
            assert data.startswith(b"HTTP/1.1 408 "), data[:80]
            assert b"SMS_BODY_TIMEOUT_S" in data
            assert closed_after < 30
        text = http.get("/metrics").text
        assert (
            'sms_requests_total{model="",route="/predict/image",status="408",version=""} 1000.0'
            in text
        )


def test_hang_ups_mid_upload_are_499_never_500(repo: Path) -> None:
    with (
        running_server(settings_for(repo)) as url,
        httpx.Client(base_url=url) as http,
        Collected() as log,
    ):
        host, port = url.removeprefix("http://").split(":")
        asyncio.run(stall(host, int(port), 1000, hang_up=True))
        series_499 = 'sms_requests_total{model="",route="/predict/image",status="499",version=""}'
        deadline = time.monotonic() + 30
        while f"{series_499} 1000.0" not in http.get("/metrics").text:
            assert time.monotonic() < deadline, "not every hang-up was counted as 499"
            time.sleep(0.1)
        assert 'status="500"' not in http.get("/metrics").text
        assert predict(http).status_code == 200
    app_records = log.records
    assert not [r for r in app_records if r.levelno >= logging.WARNING]
    assert not [r for r in app_records if r.exc_info]
    hung_up = [r for r in app_records if "hung up" in r.getMessage()]
    assert len(hung_up) == 1000


def test_requests_beyond_the_cap_get_503_at_once(repo: Path) -> None:
    settings = settings_for(repo, max_connections=20, body_timeout_s=5)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        host, port = url.removeprefix("http://").split(":")

        async def scenario() -> httpx.Response:
            stalled = asyncio.create_task(stall(host, int(port), 20, hang_up=False))
            await asyncio.sleep(1)
            answer = await asyncio.to_thread(predict, http)
            await stalled
            return answer

        refused = asyncio.run(scenario())
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "too_many_connections"
        assert "SMS_MAX_CONNECTIONS" in refused.json()["error"]["message"]
        assert predict(http).status_code == 200  # the stalled ones are gone again
