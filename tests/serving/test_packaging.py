"""The wheel: built without setuptools deprecation warnings (SPDX licence), and it ships the
demo page and the docs assets (package data), so that an installed server serves them too."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from serving_harness import REPO_ROOT


def _has_setuptools_77() -> bool:
    """Whether this environment can build the wheel itself (a fresh Python 3.11 venv has
    setuptools 65; then pip builds in an isolated environment with the one pyproject asks for)."""
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


def test_wheel_builds_cleanly_and_ships_the_pages(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the code
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for package in ("app", "training"):
        shutil.copytree(
            REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            *(["--no-build-isolation"] if _has_setuptools_77() else []),
            "-v",  # shows the build backend's own output, where setuptools warns
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    output = built.stdout + built.stderr
    assert "Deprecat" not in output, output
    (wheel,) = (tmp_path / "dist").glob("small_model_server-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: Apache-2.0" in archive.read(metadata).decode()
    for shipped in (
        "app/http/static/index.html",
        "app/http/static/demo.js",
        "app/http/static/demo.css",
        "app/http/static/favicon.ico",
        "app/http/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "app/http/static/vendor/swagger-ui/LICENSE",
        "app/http/static/vendor/redoc/redoc.standalone.js",
        "app/http/static/vendor/redoc/LICENSE",
        "app/http/static/vendor/README.md",
    ):
        assert shipped in names, f"{shipped} is not in the wheel"
