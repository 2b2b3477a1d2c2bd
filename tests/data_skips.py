"""A pytest plugin (loaded by tests/conftest.py) for the tests that need the shared datasets.

Such a test skips with a reason that names SMS_DATA_DIR when its data is missing (use
`needs_data`). The run then ends with one summary line saying how many skipped and where the
data was looked for; with CI=true, a run where the data folder exists but data tests still
skipped fails, since that means a broken path rather than a machine without the data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR_ENV = "SMS_DATA_DIR"
_REPO_ROOT = Path(__file__).resolve().parent.parent
_skipped: list[str] = []


def data_dir() -> Path:
    """$SMS_DATA_DIR, else ../shared/datasets beside the repository (as training resolves it)."""
    return Path(os.environ.get(DATA_DIR_ENV) or _REPO_ROOT.parent / "shared" / "datasets")


def needs_data(path: Path) -> Path:
    """`path` when it exists; otherwise skip the test as one that needs the datasets."""
    if not path.exists():
        pytest.skip(f"needs the shared datasets: {path} not found (set {DATA_DIR_ENV})")
    return path


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    return str(report.longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and DATA_DIR_ENV in _skip_reason(report):
        _skipped.append(report.nodeid)


def _fails_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true" and bool(_skipped) and data_dir().is_dir()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _fails_in_ci() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _skipped:
        return
    where = data_dir()
    if _fails_in_ci():
        terminalreporter.write_line(
            f"error: {len(_skipped)} tests that need the shared datasets skipped although "
            f"{where} exists (CI=true): check {DATA_DIR_ENV} and the paths they name",
            red=True,
            bold=True,
        )
    else:
        terminalreporter.write_line(
            f"{len(_skipped)} tests need the shared datasets and skipped: set {DATA_DIR_ENV} "
            f"to the datasets folder (looked in {where})",
            yellow=True,
            bold=True,
        )
