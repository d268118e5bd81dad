"""Every tutorial runs, as a script, in fast mode, and opens as a notebook (jupytext)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))


def test_tutorials_exist():
    assert any(p.name.startswith("01_") for p in TUTORIALS)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_fast_mode(path, tmp_path):
    env = dict(
        os.environ, MINIREASON_FAST="1", MINIREASON_TUTORIAL_OUT=str(tmp_path), MPLBACKEND="Agg"
    )
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"{path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert list(tmp_path.glob("*.png")), f"{path.name} saved no figure"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_is_a_valid_jupytext_notebook(path):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(path)
    kinds = {cell.cell_type for cell in nb.cells}
    assert kinds == {"markdown", "code"}
    assert len(nb.cells) >= 6
