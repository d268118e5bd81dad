"""Shared fixtures: where the real data lives, and the GPU skip."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from minireason.data.io import write_head

ROOT = Path(__file__).resolve().parents[1]

# The Ctrl-C tests send SIGINT to the commands they start. A runner started in the background
# (``nohup``, ``cmd &`` in a script) ignores SIGINT, and its children inherit the ignoring, so
# Python would never raise KeyboardInterrupt in them. A handled signal is reset to the default
# in a child at exec: the commands start as they do from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def data_root() -> Path:
    """``$MINIREASON_DATA_DIR`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("MINIREASON_DATA_DIR")
    return Path(env) if env else (ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (read-only). Skips, saying why, when they are not there."""
    d = data_root()
    if not d.is_dir():
        pytest.skip(f"real data not found at {d}; set MINIREASON_DATA_DIR")
    return d


MI_REVIEWS = "amazon-musical-instruments-2014/reviews_Musical_Instruments_5.json.gz"

# A model small enough to train in a second: for tests of the pipeline, not of quality.
MICRO_PRESET = {
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 128, "seed": 7},
    "pretrain": {
        "batch_size": 4,
        "block_size": 32,
        "max_steps": 3,
        "warmup_steps": 1,
        "eval_interval": 0,
        "checkpoint_interval": 0,
    },
    "finetune": {
        "batch_size": 4,
        "max_steps": 3,
        "warmup_steps": 1,
        "eval_interval": 0,
        "checkpoint_interval": 0,
    },
}


@pytest.fixture(scope="session")
def mi_slice(data_dir, tmp_path_factory) -> Path:
    """The first 600 lines of the real Musical Instruments reviews, gzipped, laid out as
    ``ROOT/amazon-musical-instruments-2014/reviews_Musical_Instruments_5.json.gz``; returns ROOT."""
    root = tmp_path_factory.mktemp("mi_slice")
    write_head(data_dir / MI_REVIEWS, root / MI_REVIEWS, 600)
    return root


@pytest.fixture(scope="session")
def micro_preset_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "micro.json"
    path.write_text(json.dumps(MICRO_PRESET))
    return path


@pytest.fixture(scope="session")
def micro_prepared(data_dir, tmp_path_factory) -> Path:
    """A prepared directory of the first 600 real reviews (``prepare_sample``: small
    vocabulary and aspect set)."""
    from minireason.prep.prepare import prepare_sample

    return prepare_sample(data_dir / MI_REVIEWS, tmp_path_factory.mktemp("micro") / "prep", 600)


@pytest.fixture(scope="session")
def micro_run(micro_prepared, micro_preset_file) -> tuple[Path, Path]:
    """(prepared dir, run dir): the micro model trained for a few steps on the slice."""
    from minireason.train.recipe import run_recipe

    run = micro_prepared.parent / "run"
    run_recipe(micro_prepared, micro_preset_file, run, progress=False)
    return micro_prepared, run


def seed_file(folder, value: str) -> str:
    """A course seed file as ``grade --seed-file`` wants it (0600); its path."""
    path = Path(folder) / "course_seed"
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def planted_file(
    tmp_path, base: Path, prelude: str = "", old: str = "", new: str = "", name: str = ""
) -> Path:
    """A submission made from ``base`` (a solution or a stub): ``old`` replaced by ``new``
    (it must occur once) and ``prelude`` put after its ``import numpy as np`` line; written
    to ``tmp_path / name`` (default: ``base``'s name)."""
    source = base.read_text()
    if old:
        assert source.count(old) == 1, f"{old!r} must occur once"
        source = source.replace(old, new)
    lines = source.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("import numpy as np"))
    path = tmp_path / (name or base.name)
    path.write_text("".join(lines[: at + 1]) + prelude + "".join(lines[at + 1 :]))
    return path


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when CuPy or a GPU is missing, with the reason."""
    if not any("gpu" in item.keywords for item in items):
        return
    from minireason.backend import gpu_available

    ok, why = gpu_available()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class LocalServer:
    """A local HTTP server on 127.0.0.1 for one payload (the download tests' stand-in for a
    dataset host); honours Range unless told not to; logs the Range of every request."""

    def __init__(self, payload: bytes, honour_range: bool = True, cut_after: int | None = None):
        self.payload, self.honour_range, self.cut_after = payload, honour_range, cut_after
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = 0
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header(
                        "Content-Range",
                        f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}",
                    )
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body = body[: server.cut_after]
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file.bin"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- a browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str | None:
    """``$MINIREASON_CHROMIUM``, else Debian's ``chromium`` on the PATH or in /usr/bin."""
    for candidate in (
        os.environ.get("MINIREASON_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (its own fresh profile, as Playwright's ``launch`` makes one)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright for Python is not installed (pip install -e '.[dev]')",
    )
    exe = chromium_executable()
    if exe is None:
        pytest.skip(
            "no Chromium to drive: install Debian's chromium (apt-get install chromium) "
            "or set MINIREASON_CHROMIUM to a Chromium executable"
        )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Opened:
    """A page opened from ``file://``, with what went wrong in it recorded."""

    def __init__(self, browser, path: Path, width: int = 1200):
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else 0)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on(
            "request",
            lambda r: (
                self.requests.append(r.url) if not r.url.startswith(("file:", "data:")) else 0
            ),
        )
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    def clean(self):
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.requests == [], f"network requests from a self-contained page: {self.requests}"
        assert self.dialogs == []


@pytest.fixture(autouse=True, scope="session")
def _thread_plan_cache(tmp_path_factory):
    """Thread plans measured by the tests go to a cache of their own, not the user's; and
    the tests run on the pool plan (``$MINIREASON_PLAN``, unless set), so that their bits
    never hang on which plan a loaded machine measured fastest. The tests of calibration
    unset it."""
    path = tmp_path_factory.mktemp("plans") / "thread-plans.json"
    before = {k: os.environ.get(k) for k in ("MINIREASON_PLAN_CACHE", "MINIREASON_PLAN")}
    os.environ["MINIREASON_PLAN_CACHE"] = str(path)
    os.environ.setdefault("MINIREASON_PLAN", "pool")
    yield path
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
