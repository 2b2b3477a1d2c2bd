"""Cross-origin access for browser pages served from another origin (SMS_CORS_ORIGINS).

Off unless origins are configured: the demo page at `/` is same-origin and needs none.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.settings import Settings

# What a browser page needs to call the API: the predict POSTs (JSON or multipart), the GETs,
# and the request-id and deadline headers it may send and read back.
ALLOWED_METHODS = ["GET", "POST"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-Request-ID", "X-Deadline-Ms"]
EXPOSED_HEADERS = ["X-Request-ID", "Retry-After"]


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Add Starlette's CORSMiddleware when `settings.cors_origins` names any origin."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=600,
    )
