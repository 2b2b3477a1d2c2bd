"""Several serving processes on one port (SMS_WORKERS=2): both answer, /metrics counts the
requests of both, /readyz is ready only when every process is, and a worker that dies is
replaced (readiness waits for the replacement)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from model_factory import text_model
from serving_harness import REPO_ROOT
from test_process import free_port

WORKERS = 2


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`python -m app` with SMS_WORKERS=2; yields its URL once /readyz first answers 200, after
    checking that no earlier 200 came while a process was missing or loading."""
    text_model(tmp_path, "imdb")
    port = free_port()
    env = {
        **os.environ,
        "SMS_MODELS_DIR": str(tmp_path),
        "SMS_PORT": str(port),
        "SMS_HOST": "127.0.0.1",
        "SMS_WORKERS": str(WORKERS),
        "SMS_ACCESS_LOG": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, server)
        yield url, server
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "Stopping parent process" in output


def wait_until_ready(url: str, server: subprocess.Popen[str], timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = httpx.get(f"{url}/readyz")
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 200:
            body = answer.json()
            assert len(body["processes"]) == WORKERS, body
            assert all(p["ready"] and p["models"] == {"imdb": "ready"} for p in body["processes"])
            return body
        if answer is not None:
            assert answer.status_code == 503, answer.text
        assert server.poll() is None and time.monotonic() < deadline, "not ready in time"
        time.sleep(0.05)


def answering_pids(url: str, requests: int) -> set[str]:
    """The processes that answered `requests` concurrent /healthz calls, each on its own
    connection (the processes share one listening socket: whichever accepts, answers)."""

    def one(_: int) -> str:
        answer = httpx.get(f"{url}/healthz")
        assert answer.status_code == 200
        return answer.headers["X-Server-Process"]

    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(one, range(requests)))


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat (Z: a zombie, dead but not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return "gone"


def predictions_counted(metrics: str) -> float:
    pattern = r'sms_requests_total\{[^}]*route="/predict/sentiment"[^}]*status="200"[^}]*\} (\S+)'
    return sum(float(value) for value in re.findall(pattern, metrics))


def test_both_processes_answer_and_metrics_add_up(two_workers: tuple[str, subprocess.Popen]):
    url, _ = two_workers
    ready = httpx.get(f"{url}/readyz").json()
    pids = {str(p["pid"]) for p in ready["processes"]}
    assert len(pids) == WORKERS

    seen: set[str] = set()
    for _ in range(10):  # which process accepts is the kernel's choice: ask until both did
        seen |= answering_pids(url, 40)
        if seen == pids:
            break
    assert seen == pids

    def predict(_: int) -> int:
        return httpx.post(f"{url}/predict/sentiment", json={"text": "great"}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(predict, range(60))) == {200}
    metrics = httpx.get(f"{url}/metrics").text
    assert predictions_counted(metrics) == 60  # the sum over both processes
    assert 'sms_model_ready{model="imdb",version="1"} 1.0' in metrics
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_readiness_waits_for_every_process(two_workers: tuple[str, subprocess.Popen]) -> None:
    url, server = two_workers
    with httpx.Client(base_url=url) as one_connection:  # kept alive: one process answers both
        victim = int(one_connection.get("/healthz").headers["X-Server-Process"])
        one_connection.post("/predict/sentiment", json={"text": "fine"}).raise_for_status()
    pids = [p["pid"] for p in httpx.get(f"{url}/readyz").json()["processes"]]
    before = [victim, *(pid for pid in pids if pid != victim)]
    os.kill(victim, signal.SIGKILL)  # no shutdown: it cannot withdraw its own readiness
    deadline = time.monotonic() + 10
    while process_state(victim) not in ("Z", "X", "gone"):
        assert time.monotonic() < deadline, "the worker did not die"
        time.sleep(0.01)

    answer = httpx.get(f"{url}/readyz")
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert before[0] not in [p["pid"] for p in body["processes"]]
    assert body["problems"]
    assert httpx.get(f"{url}/v2/health/ready").status_code == 400

    after = wait_until_ready(url, server)  # uvicorn starts a replacement, which loads and warms
    pids = [p["pid"] for p in after["processes"]]
    assert before[1] in pids and before[0] not in pids
    metrics = httpx.get(f"{url}/metrics").text
    assert predictions_counted(metrics) == 1  # the dead process's count still counts
    assert 'sms_model_ready{model="imdb",version="1"} 1.0' in metrics


def test_a_repository_that_cannot_be_served_stops_every_process(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SMS_MODELS_DIR": str(tmp_path),  # empty: nothing to serve
        "SMS_PORT": str(free_port()),
        "SMS_HOST": "127.0.0.1",
        "SMS_WORKERS": str(WORKERS),
    }
    done = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr  # uvicorn's start-up failure, as with one process
    assert "cannot serve the model repository" in done.stderr
    assert "Stopping parent process" in done.stderr
