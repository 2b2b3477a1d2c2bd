"""`python -m app`: serve the models in SMS_MODELS_DIR on SMS_HOST:SMS_PORT (0.0.0.0:8000).

uvicorn handles SIGTERM/SIGINT gracefully: it stops accepting, finishes the requests in flight,
then runs the lifespan shutdown (which drains the batchers).
"""

from __future__ import annotations

import socket
import sys

import uvicorn

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
    from app.main import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep ours: request ids, text or JSON
        access_log=False,  # our middleware writes the access line, with the request id
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
