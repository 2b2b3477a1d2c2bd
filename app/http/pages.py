"""The pages a person opens in a browser: the demo page at `/`, Swagger UI at `/docs`, ReDoc at
`/redoc`, the favicon and the static files under `/static`.

Everything is served from the package (app/http/static): the demo page has no build step and
the docs assets are vendored (static/vendor/README.md says from where), so the pages work on a
machine without internet access. `page_routes()` is the whole interface: add its routes to the
app, and build the app with `docs_url=None, redoc_url=None` so that FastAPI's CDN pages stay off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/static"
OPENAPI_URL = "/openapi.json"

# The demo page may load and talk to its own origin only: no inline script or style, no frames,
# no plugins, no form posts elsewhere. Whatever an answer contains is inserted as text; this is
# the second line of defence should that ever slip.
DEMO_PAGE_POLICY = (
    "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
DEMO_PAGE_HEADERS = {
    "Content-Security-Policy": DEMO_PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# ReDoc's bundle shows a logo from its vendor's CDN: the policy stops that request (the image
# falls back to its alt text). It needs inline styles (styled-components) and a blob: worker.
REDOC_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)


async def demo_page(request: Request) -> Response:
    """The demo page: try every model from a browser without writing code."""
    return FileResponse(STATIC_DIR / "index.html", headers=DEMO_PAGE_HEADERS)


async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI from the vendored swagger-ui-dist, not a CDN. The validator badge is off: it
    would send the schema to an outside host."""
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title="Small model server - Swagger UI",
        swagger_js_url=f"{STATIC_PATH}/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_PATH}/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/favicon.ico",
        swagger_ui_parameters={"validatorUrl": None},
    )


async def redoc(request: Request) -> HTMLResponse:
    """ReDoc from the vendored bundle, with the system fonts instead of Google's."""
    page = get_redoc_html(
        openapi_url=OPENAPI_URL,
        title="Small model server - ReDoc",
        redoc_js_url=f"{STATIC_PATH}/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url="/favicon.ico",
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = REDOC_POLICY
    return page


async def favicon(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon")


def page_routes() -> list[BaseRoute]:
    """GET /, /docs, /redoc, /favicon.ico and the static mount, outside the OpenAPI schema."""
    return [
        Route("/", demo_page, methods=["GET"], include_in_schema=False),
        Route("/docs", swagger_ui, methods=["GET"], include_in_schema=False),
        Route("/redoc", redoc, methods=["GET"], include_in_schema=False),
        Route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False),
        Mount(STATIC_PATH, app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
