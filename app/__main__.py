"""`python -m app`: serve the models in SMS_MODELS_DIR on SMS_HOST:SMS_PORT (0.0.0.0:8000).

uvicorn handles SIGTERM/SIGINT gracefully: it stops accepting, finishes the requests in flight,
then runs the lifespan shutdown (which drains the batchers).
"""

from __future__ import annotations

import uvicorn

from app.settings import Settings


def main() -> None:
    from app.main import create_app

    settings = Settings()
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
