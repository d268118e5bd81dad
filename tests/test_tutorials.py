"""Every tutorial runs in fast mode as a script (its figures saved) and as a notebook (its
figures saved and shown inline)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minireason.data.fetch import find_reviews

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))


def skip_without_its_data(path: Path) -> None:
    """A tutorial that reads the real reviews skips, saying why, where they cannot be found
    (the tests never download them)."""
    if "find_reviews(" not in path.read_text(encoding="utf-8"):
        return
    try:
        find_reviews("musical-instruments")
    except FileNotFoundError as exc:
        pytest.skip(f"{path.name} reads the real reviews: {exc}")


def test_tutorials_exist():
    assert any(p.name.startswith("01_") for p in TUTORIALS)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_fast_mode(path, tmp_path):
    skip_without_its_data(path)
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


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_as_a_notebook_with_its_figures_inline(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext", reason="jupytext is not installed (.[dev])")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (.[dev])")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (.[dev])")
    skip_without_its_data(path)
    monkeypatch.setenv("MINIREASON_FAST", "1")
    monkeypatch.setenv("MINIREASON_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own: inline
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    shows = [c for c in nb.cells if c.cell_type == "code" and "plt.show()" in c.source]
    assert shows, f"{path.name} shows no figure"
    for cell in shows:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"{path.name}: no inline figure in the cell\n{cell.source[:300]}"
    assert len(list(tmp_path.glob("*.png"))) >= len(shows), f"{path.name} saved fewer figures"
