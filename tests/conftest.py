"""Shared serving fixtures: model repositories built with tests/model_factory.py, served by the
real app through tests/serving_harness.py.

pytest puts this directory on sys.path (rootdir conftest), so tests import those helpers as
`import model_factory` and `import serving_harness`. The hooks of tests/data_skips.py (the
summary line and the CI check for tests that need the shared datasets) are loaded here.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from data_skips import (  # noqa: F401 (hooks: pytest finds them by name in this module)
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)
from serving_harness import running_server, settings_for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take the training `data_dir` fixture need the datasets: mark them `data`."""
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def standard_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """mnist, cifar10, imdb and speech test doubles (tests/model_factory.py) in one repository."""
    import model_factory

    return model_factory.standard_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def standard_url(standard_models: dict) -> Iterator[str]:
    """One server over the standard test repository, shared by the tests that only read."""
    models_dir = next(iter(standard_models.values())).directory.parent
    with running_server(settings_for(models_dir)) as url:
        yield url


@pytest.fixture
def client(standard_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standard_url, timeout=30) as http:
        yield http
