"""`python -m app`: serve the models in SMS_MODELS_DIR on SMS_HOST:SMS_PORT (0.0.0.0:8000).

uvicorn handles SIGTERM/SIGINT gracefully: it stops accepting, finishes the requests in flight,
then runs the lifespan shutdown (which drains the batchers).

With SMS_WORKERS > 1, uvicorn's own supervisor runs that many worker processes on one listening
socket, each building its own app (`app.main:create_app`: registry, batchers, sessions). We use
it rather than a socket per process with SO_REUSEPORT because it already does what a supervisor
must: restart a worker that dies, stop when one fails at start-up, forward SIGTERM and wait for
the graceful shutdown of each. Before it starts them, this parent creates the shared folder for
metrics and readiness (app/processes.py), and clears what a worker killed mid-flight leaves there.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from app.processes import SHARED_DIR_ENV, clear_dead_worker
from app.settings import Settings


def port_is_free(host: str, port: int) -> bool:
    """Whether uvicorn could listen on host:port. Checked before the models load, so that a busy
    port costs a second and one clear line, not the load and then a bind error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        return True  # not ours to judge: uvicorn reports the bad host itself
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def main() -> None:
    settings = Settings()
    if not port_is_free(settings.host, settings.port):
        sys.exit(
            f"error: port {settings.port} on {settings.host} is in use; set SMS_PORT to a free "
            "port (or stop the other server)"
        )
    if settings.workers > 1:
        serve_workers(settings)
        return
    from app.main import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep ours: request ids, text or JSON
        access_log=False,  # our middleware writes the access line, with the request id
        timeout_graceful_shutdown=30,
    )


class Supervisor(Multiprocess):
    """uvicorn's supervisor, also clearing a dead worker's readiness and live gauges (a worker
    that stops normally withdraws them itself)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], shared: Path):
        super().__init__(config, sockets)
        self.shared = shared
        self.failed_to_start = False

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        self.failed_to_start |= any(p.exitcode == STARTUP_FAILURE for p in self.processes)
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                clear_dead_worker(self.shared, pid)


def serve_workers(settings: Settings) -> None:
    from app.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    shared = Path(tempfile.mkdtemp(prefix="sms-workers-"))
    os.environ[SHARED_DIR_ENV] = str(shared)  # the workers inherit it
    os.environ["SMS_WORKERS"] = str(settings.workers)  # as read here, .env included
    logging.getLogger("app.main").info(
        "%d worker processes, %d ONNX Runtime threads each",
        settings.workers,
        settings.intra_op_threads,
    )
    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    supervisor = Supervisor(config, [config.bind_socket()], shared)
    try:
        supervisor.run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    if supervisor.failed_to_start:
        sys.exit(STARTUP_FAILURE)  # as a single process does: the log above says why


if __name__ == "__main__":
    main()
