"""The pages a browser opens (app/http/pages.py) and cross-origin access, over real HTTP: the
demo page with its Content-Security-Policy, the docs from the package (no CDN), CORS only for
the configured origins. tests/browser/ checks the same pages in a real browser."""

from __future__ import annotations

import re

import httpx
from serving_harness import running_server, settings_for

from app.http.pages import STATIC_DIR

OUTSIDE_URL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)="([^"]+)\"""", html)


def test_demo_page_is_served_with_a_same_origin_policy(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    assert not OUTSIDE_URL.search(html), "the demo page loads something from another host"
    assert "<style" not in html and "style=" not in html, "inline styles break under the policy"
    assert "<script>" not in html and "onclick" not in html, "inline scripts break under the policy"
    for path in ("/docs", "/redoc", "/models"):
        assert f'href="{path}"' in html
    for reference in _references(html):
        if reference.startswith("/"):
            assert client.get(reference).status_code == 200, reference


def test_demo_script_never_inserts_html(client: httpx.Client) -> None:
    script = client.get("/static/demo.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script.text, f"demo.js uses {sink}"


def test_docs_and_redoc_load_their_assets_from_the_app(client: httpx.Client) -> None:
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200
        assert not OUTSIDE_URL.search(page.text), f"{path} loads from another host"
        assert "fonts.googleapis" not in page.text
        references = _references(page.text)
        assert "/favicon.ico" in references
        for reference in references:
            asset = client.get(reference)
            assert asset.status_code == 200, reference
            assert len(asset.content) > 1000, reference
    assert client.get("/favicon.ico").headers["content-type"] == "image/x-icon"
    assert client.get("/openapi.json").status_code == 200


def test_pages_stay_out_of_the_api_schema(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/docs", "/redoc", "/favicon.ico"} & set(paths)


def test_vendored_docs_assets_carry_their_licences() -> None:
    vendor = STATIC_DIR / "vendor"
    for package in ("swagger-ui", "redoc"):
        licence = (vendor / package / "LICENSE").read_text()
        assert "License" in licence or "LICENSE" in licence, package
    versions = (vendor / "README.md").read_text()
    assert "swagger-ui-dist@" in versions and "redoc@" in versions


def test_no_cors_headers_unless_configured(client: httpx.Client) -> None:
    answer = client.get("/healthz", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_cors_allows_the_configured_origins_only(standard_models: dict) -> None:
    models_dir = next(iter(standard_models.values())).directory.parent
    settings = settings_for(models_dir, cors_origins=["https://app.example"])
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        preflight = http.options(
            "/predict/sentiment",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in preflight.headers["access-control-allow-methods"]

        answer = http.post(
            "/predict/sentiment",
            json={"text": "a fine film"},
            headers={"Origin": "https://app.example"},
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()

        refused = http.options(
            "/predict/sentiment",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
