"""The README documents every setting and every endpoint the app has."""

from __future__ import annotations

from serving_harness import REPO_ROOT

from app.main import create_app
from app.settings import Settings


def test_readme_lists_every_setting_and_route() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"| `SMS_{name.upper()}` |" in readme, f"SMS_{name.upper()} missing from README"
    app = create_app(Settings(_env_file=None, enable_benchmark_routes=True))
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith(("/predict", "/models", "/healthz", "/readyz", "/metrics", "/noop")):
            assert f"{path}`" in readme, f"{path} missing from README"
