"""Every command a user is shown runs: the examples of ``--help``, and the commands that
messages suggest (finish an unfinished run, check tuned weights, fetch a dataset, evaluate a
new run), each run through :func:`minireason.cli.main` on a small real setup.

The examples name the demo's paths (``runs/demo/prepared``, ``runs/demo/run``) and one of
its users; here they run on the micro run (tests/conftest.py) with a user of its slice, and
the example's own user is checked against the full data the demo uses.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import re
import shlex
import shutil
import socket
from pathlib import Path

import pytest
from conftest import MI_REVIEWS, LocalServer

from minireason.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def help_texts() -> dict[tuple, str]:
    """``{command path: its --help}`` for the top level and every command and subcommand."""
    texts = {}

    def walk(parser, path):
        texts[path] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))

    walk(build_parser(), ())
    return texts


def help_examples() -> list[str]:
    """Every example command line of ``--help``: an indented line that starts with
    ``minireason ``."""
    return [
        line.strip()
        for text in help_texts().values()
        for line in text.splitlines()
        if line.startswith(" ") and line.strip().startswith("minireason ")
    ]


EXAMPLES = help_examples()


def test_the_examples_are_found():
    commands = [shlex.split(e)[1] for e in EXAMPLES]
    assert commands.count("explain") >= 2 and commands.count("explain-all") >= 2, EXAMPLES


def test_every_command_a_help_text_names_exists():
    texts = help_texts()
    for path, text in texts.items():
        for named in re.findall(r"'minireason ([a-z][a-z -]*[a-z])'", text):
            assert tuple(named.split()) in texts, f"{' '.join(path)}: 'minireason {named}'"


def example_users() -> set[str]:
    return {u for e in EXAMPLES for u in re.findall(r"--user (\S+)", e)}


def test_the_examples_users_are_users_of_the_demos_data(data_dir):
    assert example_users(), "no example names a user"
    with gzip.open(data_dir / MI_REVIEWS, "rt", encoding="utf-8") as fh:
        users = {json.loads(line)["reviewerID"] for line in fh}
    assert example_users() <= users


@pytest.fixture(scope="module")
def slice_user(micro_run) -> str:
    from minireason.prep.prepared import load_prepared

    return load_prepared(micro_run[0]).test[0]["user"]


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_every_help_example_runs(example, micro_run, slice_user, tmp_path, capsys):
    """The demo's paths and user are the micro run's; ``explain-all`` is given two users and
    one recommendation each (the options of the example are kept), and a Dask cluster of
    its own for ``--scheduler``."""
    prepared_dir, run_dir = micro_run
    line = example.replace("runs/demo/prepared", str(prepared_dir))
    line = line.replace("runs/demo/run", str(run_dir)).replace("runs/demo", str(tmp_path))
    for user in example_users():
        line = line.replace(user, slice_user)
    argv = shlex.split(line)[1:]
    assert "runs/" not in line, line
    if argv[0] != "explain-all":
        assert main(argv) == 0, capsys.readouterr().err
        return
    distributed = pytest.importorskip("distributed", reason="explain-all needs [scale]")
    pytest.importorskip("pyarrow", reason="explain-all needs [scale]")
    users = tmp_path / "users.txt"
    users.write_text(f"{slice_user}\n")
    argv += ["--users", str(users), "--top-k", "1"]
    if "tcp://HOST:8786" not in argv:
        assert main(argv) == 0, capsys.readouterr().err
        return
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        argv[argv.index("tcp://HOST:8786")] = c.scheduler_address
        assert main(argv) == 0, capsys.readouterr().err


# --------------------------------------------------------------------------- suggestions


def suggested(text: str) -> list[list[str]]:
    """The command lines a message suggests, as arguments of ``main``: quoted when they
    hold no path ('minireason data list'), else at the end of a line, after a colon or an
    indent (their paths quoted for a shell)."""
    found = re.findall(r"'(minireason [^']+)'", text)
    found += re.findall(r"(?:: |^ +)(minireason [^\n]+)$", text, re.M)
    return [shlex.split(line)[1:] for line in found]


@pytest.mark.parametrize("how", ["stopped at step 2 of 3", "no checkpoint", "trained with --set"])
def test_an_unfinished_runs_suggestion_finishes_it(
    how, micro_prepared, micro_preset_file, tmp_path, monkeypatch, capsys
):
    from minireason.prep.prepared import load_prepared
    from minireason.train import recipe

    train = recipe.train

    def stopping(*args, label, **kwargs):  # fine-tuning stops after step 2, as if killed
        return train(*args, label=label, stop_at_step=2 if label == "finetune" else None, **kwargs)

    run_dir = tmp_path / "my run"  # a path to quote
    preset = micro_preset_file
    if how == "trained with --set":  # its preset.json records the values, and resumes with them
        preset = recipe.load_preset(micro_preset_file, ["finetune.learning_rate=0.002"])
    with monkeypatch.context() as m:
        m.setattr(recipe, "train", stopping)
        recipe.run_recipe(micro_prepared, preset, run_dir, progress=False)
    if how == "no checkpoint":  # stopped before fine-tuning's first checkpoint
        shutil.rmtree(run_dir / "finetune")
    user = load_prepared(micro_prepared).test[0]["user"]
    explain = ["explain", "--run", str(run_dir), "--prepared", str(micro_prepared), "--user", user]
    monkeypatch.chdir(tmp_path)  # the suggestion works from anywhere
    assert main([*explain, "-k", "1"]) == 1
    err = capsys.readouterr().err
    (command,) = suggested(err)
    assert command[:2] == ["train", "--resume"], err
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "finetune: resumed" in out or "finetune: trained" in out, out
    assert main([*explain, "-k", "1"]) == 0
    assert "(finished)" in capsys.readouterr().out

    (evaluate,) = suggested(out)  # what train suggests next, the same in both cases
    assert evaluate[:3] == ["evaluate", "--prepared", str(micro_prepared)]
    if how == "no checkpoint":
        assert main(evaluate) == 0, capsys.readouterr().err


def test_tunes_suggestion_evaluates_the_weights(micro_run, tmp_path, capsys):
    prepared_dir, run_dir = micro_run
    weights = tmp_path / "tuned weights.json"
    argv = ["tune", "--prepared", prepared_dir, "--run", run_dir, "--out", weights]
    assert main([*map(str, argv), "--limit", "4", "--passes", "1"]) == 0
    out = capsys.readouterr().out
    (command,) = suggested(out)
    assert command[0] == "evaluate" and command[command.index("--weights") + 1] == str(weights)
    assert main(command) == 0, capsys.readouterr().err
    assert (tmp_path / "tuned weights-valid" / "evaluation.json").is_file()
    assert f"--weights '{weights}' in explain" in out


def test_the_demos_next_step_runs(micro_run, micro_preset_file, tmp_path, monkeypatch, capsys):
    """The demo's closing suggestion (train small, then explain and evaluate with it), run
    with the micro preset in place of small, which would take twenty minutes."""
    from minireason.demo import next_step
    from minireason.prep.prepared import load_prepared

    prepared_dir, _ = micro_run
    user = sorted(load_prepared(prepared_dir).users)[0]
    monkeypatch.chdir(tmp_path)  # the suggestion writes runs/small here
    line = next_step(prepared_dir, user)
    commands = re.split(r"; then | and (?=minireason )", line[line.index("minireason ") :])
    assert [c.split()[1] for c in commands] == ["train", "explain", "evaluate"]
    for command in commands:
        argv = shlex.split(command)[1:]
        if argv[0] == "train":
            argv[argv.index("--preset") + 1] = str(micro_preset_file)
        assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "runs" / "small" / "eval" / "evaluation.json").is_file()


def test_the_demos_whole_evaluation_runs(micro_run, tmp_path, capsys):
    """The demo's line for evaluating all the test records, run on a copy of the micro run
    (the evaluation goes into the run's folder)."""
    from minireason.demo import whole_evaluation

    prepared_dir, run_dir = micro_run
    run = shutil.copytree(run_dir, tmp_path / "run")
    line = whole_evaluation(prepared_dir, run, 93)
    assert line.startswith("the whole test split (93 records): minireason evaluate ")
    assert main(shlex.split(line[line.index("minireason ") :])[1:]) == 0, capsys.readouterr()
    result = json.loads((run / "eval" / "evaluation.json").read_text(encoding="utf-8"))
    assert result["info"]["limit"] is None and result["info"]["split"] == "test"


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """No dataset anywhere the package looks, and an empty cache; returns the cache."""
    from minireason.data import fetch

    monkeypatch.delenv("MINIREASON_DATA_DIR", raising=False)
    monkeypatch.setenv("MINIREASON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "CHECKOUT_DATA", tmp_path / "no-checkout-data")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # no ../shared/data either
    return tmp_path / "cache"


@pytest.fixture
def served_dataset(data_dir, monkeypatch):
    """The Musical Instruments reviews served from 127.0.0.1 in place of their host (same
    bytes, size and SHA-256)."""
    from dataclasses import replace

    from minireason.data import fetch

    name = "musical-instruments"
    payload = (data_dir / MI_REVIEWS).read_bytes()
    with LocalServer(payload) as server:
        dataset = fetch.DATASETS[name]
        files = (replace(dataset.files[0], url=server.url),)
        monkeypatch.setitem(fetch.DATASETS, name, replace(dataset, files=files))
        yield name


def test_the_demos_missing_data_suggestion_fetches_it(no_local_data, served_dataset, capsys):
    from minireason.data.fetch import find_reviews

    assert main(["demo", "--offline", "--out", "demo-run"]) == 1
    err = capsys.readouterr().err
    (command,) = suggested(err)
    assert command == ["data", "fetch", served_dataset], err
    assert main(command) == 0
    assert find_reviews(served_dataset).is_relative_to(no_local_data)


def test_a_failed_download_in_the_demo_is_one_line_naming_the_address(
    no_local_data, monkeypatch, capsys
):
    """Was: the demo's download, refused (no network, a closed port), ended in a traceback;
    ``data fetch`` said it in one line."""
    from dataclasses import replace

    from minireason.data import fetch

    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/reviews.json.gz"
    dataset = fetch.DATASETS["musical-instruments"]
    files = (replace(dataset.files[0], url=url),)
    monkeypatch.setitem(fetch.DATASETS, "musical-instruments", replace(dataset, files=files))
    assert main(["demo", "--out", "demo-run"]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"minireason demo: error: {url}: no network or server unreachable")
    assert "download reviews_Musical_Instruments_5.json.gz manually" in last
    assert "Traceback" not in err
    assert main(["data", "fetch", "musical-instruments", "--timeout", "5"]) == 1
    assert capsys.readouterr().err.startswith(f"minireason data: error: {url}: ")  # as before


def test_a_missing_input_files_suggestions_list_and_fetch(no_local_data, served_dataset, capsys):
    assert main(["prepare", "--reviews", "reviews.json.gz", "--out", "prep"]) == 1
    err = capsys.readouterr().err
    listing, fetching = suggested(err)
    assert main(listing) == 0
    known = capsys.readouterr().out
    assert fetching == ["data", "fetch", "NAME"] and f"{served_dataset}  (folder" in known
    assert main([*fetching[:-1], served_dataset]) == 0


# Every command line the package's messages suggest (found in its string literals, docstrings
# aside), and the test above that runs it; or, for a line that names a command without being
# one to run as it is, why.
SUGGESTIONS = {
    "minireason train --prepared {prepared_dir} --preset small": "test_the_demos_next_step_runs",
    "minireason evaluate --prepared {prepared_dir} --run {run_dir}": (
        "test_the_demos_whole_evaluation_runs"
    ),
    "minireason data fetch {name}": "test_the_demos_missing_data_suggestion_fetches_it",
    "minireason data fetch {DEMO_DATASET}": "the same command, when the file is cut short",
    "minireason data fetch NAME": "test_a_missing_input_files_suggestions_list_and_fetch",
    "minireason tune --out FILE": "names the command that writes a weights file",
    "minireason tune --prepared {c.prepared}": "run by the end-to-end test of tests/test_readers.py",
    "minireason explain": "test_every_help_example_runs",
    "minireason explain-all": "test_every_help_example_runs",
}


def literal_suggestions() -> set[str]:
    """Each ``minireason COMMAND`` (a command of the parser) followed by an option or a
    placeholder in a string of the package (f-strings as written, with their ``{...}``),
    docstrings aside."""
    paths = sorted((" ".join(path) for path in help_texts() if path), key=len, reverse=True)
    command = "(?:" + "|".join(map(re.escape, paths)) + ")"
    found = set()
    for path in (ROOT / "minireason").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if id(node) in docs | inner:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr):
                text = ast.unparse(node)[2:-1]
            else:
                continue
            for m in re.finditer(rf"minireason {command} (?:--|\{{|[A-Z]{{2}})[^'\"\n]*", text):
                found.add(m.group(0).strip())
    return found


def test_every_suggested_command_is_run_by_a_test():
    names = set(globals())
    for line in literal_suggestions():
        key = next((k for k in SUGGESTIONS if line.startswith(k)), None)
        assert key, f"{line!r}: which test runs it? (add it to SUGGESTIONS)"
        if SUGGESTIONS[key].startswith("test_"):
            assert SUGGESTIONS[key] in names
