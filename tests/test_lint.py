"""The code base passes ruff's linter and formatter (the configuration is in pyproject.toml)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["minireason", "tests", "tutorials"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    return subprocess.run(
        [ruff, *args, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_check_is_clean():
    proc = _ruff("check")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format_is_applied():
    proc = _ruff("format", "--check")
    assert proc.returncode == 0, "run 'make format' (ruff format):\n" + proc.stdout[-4000:]
