"""The code stays lint-clean and formatted: ruff, with the settings in pyproject.toml, over the whole tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    beside = Path(sys.executable).parent / "ruff"  # the one installed with jvae's test extras
    found = str(beside) if beside.is_file() else (shutil.which("ruff") or "ruff")
    return subprocess.run([found, *args], cwd=REPO, capture_output=True, text=True)


def test_ruff_finds_nothing():
    done = _ruff("check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-3000:]


def test_code_is_formatted():
    done = _ruff("format", "--check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-3000:]
