"""`python -m app` on a busy port: one clear line naming SMS_PORT, before any model loads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from serving_harness import REPO_ROOT

from app.__main__ import port_is_free


def test_port_is_free_tells_a_listening_port_from_a_free_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
    assert port_is_free("127.0.0.1", port)


def test_a_busy_port_is_named_before_the_models_load(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = {
            **os.environ,
            "SMS_HOST": "127.0.0.1",
            "SMS_PORT": str(port),
            # A repository that cannot load: reaching the models would fail differently.
            "SMS_MODELS_DIR": str(tmp_path / "no-models-here"),
        }
        run = subprocess.run(
            [sys.executable, "-m", "app"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"port {port}" in lines[0] and "SMS_PORT" in lines[0]
