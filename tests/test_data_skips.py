"""tests/data_skips.py: a run whose data tests skipped says so in one line naming SMS_DATA_DIR,
and fails with CI=true when the data folder exists (a broken path, not a machine without data).
Each case is a small pytest run of its own, in a subprocess, with the plugin loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serving_harness import REPO_ROOT

SUITE = """
import pytest
from data_skips import needs_data

@pytest.mark.data
def test_needs_the_data(tmp_path):
    needs_data(tmp_path / "missing" / "t10k-images-idx3-ubyte.gz")

def test_plain():
    pass
"""


def _run(tmp_path: Path, data_dir: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests"), "SMS_DATA_DIR": str(data_dir)}
    env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "data_skips",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_suite.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )


def test_skipped_data_tests_are_named_in_one_line(tmp_path: Path) -> None:
    run = _run(tmp_path, tmp_path / "nowhere", ci="")
    assert run.returncode == 0, run.stdout
    lines = [line for line in run.stdout.splitlines() if "need the shared datasets" in line]
    assert len(lines) == 1, run.stdout
    assert "1 tests" in lines[0] and "SMS_DATA_DIR" in lines[0]


def test_ci_fails_when_the_data_is_there_but_data_tests_skipped(tmp_path: Path) -> None:
    present = tmp_path / "datasets"
    present.mkdir()
    run = _run(tmp_path, present, ci="true")
    assert run.returncode == 1, run.stdout
    assert "skipped although" in run.stdout and "SMS_DATA_DIR" in run.stdout


def test_ci_passes_when_the_data_is_absent(tmp_path: Path) -> None:
    run = _run(tmp_path, tmp_path / "nowhere", ci="true")
    assert run.returncode == 0, run.stdout
