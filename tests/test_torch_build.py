"""scripts/torch-build.sh, which tells scripts/test.sh to install the CPU build of torch unless
a GPU is there or SMS_TORCH asks for CUDA (the CUDA wheels are 5.8 GB)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from serving_harness import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "torch-build.sh"
BASH = shutil.which("bash") or "/bin/bash"


def _choice(path_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # PATH holds only our folder: the script uses nothing but bash builtins and nvidia-smi.
    return subprocess.run(
        [BASH, str(SCRIPT)], env={"PATH": str(path_dir), **env}, capture_output=True, text=True
    )


def _fake_nvidia_smi(folder: Path, exit_code: int) -> None:
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!{BASH}\nexit {exit_code}\n")
    tool.chmod(0o755)


def test_no_gpu_gets_the_cpu_build(tmp_path: Path) -> None:
    assert _choice(tmp_path).stdout.strip() == "cpu"
    _fake_nvidia_smi(tmp_path, 9)  # drivers installed, no GPU: nvidia-smi fails
    assert _choice(tmp_path).stdout.strip() == "cpu"


def test_a_gpu_gets_the_cuda_build(tmp_path: Path) -> None:
    _fake_nvidia_smi(tmp_path, 0)
    assert _choice(tmp_path).stdout.strip() == "cuda"
    assert _choice(tmp_path, SMS_TORCH="cpu").stdout.strip() == "cpu"


@pytest.mark.parametrize(("asked", "expected"), [("cuda", "cuda"), ("cpu", "cpu")])
def test_sms_torch_decides(tmp_path: Path, asked: str, expected: str) -> None:
    assert _choice(tmp_path, SMS_TORCH=asked).stdout.strip() == expected


def test_a_wrong_sms_torch_is_refused(tmp_path: Path) -> None:
    refused = _choice(tmp_path, SMS_TORCH="rocm")
    assert refused.returncode != 0
    assert "SMS_TORCH must be auto, cpu or cuda" in refused.stderr
