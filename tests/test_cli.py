"""Every sub-command answers --help; the top level explains itself."""

import argparse
from dataclasses import fields

import pytest

from minireason.cli import build_parser, main


def _all_command_paths():
    paths = []

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append(prefix + [name])
                    walk(sub, prefix + [name])

    walk(build_parser(), [])
    return paths


def test_there_are_commands():
    assert ["attention-example"] in _all_command_paths()


@pytest.mark.parametrize("path", _all_command_paths(), ids=" ".join)
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(path + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: minireason " + " ".join(path))


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_cuda_without_cupy_is_one_clear_line(capsys):
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed here; this checks the message when it is not")
    except ImportError:
        pass
    assert main(["--device", "cuda", "attention-example"]) == 1
    err = capsys.readouterr().err
    assert "needs CuPy" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--attention", "flash"], "--attention flash"),
        (["--device", "cpu", "--attention", "cublas"], "--attention cublas"),
        (["--attention", "auto"], "--attention auto"),
        (["--fused"], "--fused"),
    ],
)
def test_attention_and_fused_need_cuda(flags, named, capsys, monkeypatch):
    """The GPU's kernel choices are one clear line on the CPU, never a traceback."""
    monkeypatch.delenv("MINIREASON_DEVICE", raising=False)
    assert main([*flags, "attention-example"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert named in err and "needs --device cuda" in err


def test_attention_flag_is_listed_with_its_choices(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--attention {auto,cublas,flash}" in out and "--fused" in out


def test_decoding_options_default_to_the_runs_settings():
    parser = build_parser()
    for argv in (
        ["explain", "--run", "R"],
        ["evaluate", "--prepared", "P", "--run", "R"],
        ["bench", "explain", "--run", "R", "--prepared", "P"],
        ["explain-all", "--run", "R", "--prepared", "P", "--out", "O"],
        ["bench", "explain-all", "--run", "R", "--prepared", "P"],
    ):
        args = parser.parse_args(argv)
        assert args.candidates is None and args.max_new_tokens is None, argv  # run.json decides
        assert args.weights is None, argv


def test_commands_are_listed_in_the_order_of_the_readme():
    from minireason.cli import COMMANDS

    assert list(COMMANDS) == [
        "demo",
        "attention-example",
        "prepare",
        "train",
        "evaluate",
        "tune",
        "rating-sheet",
        "explain",
        "explain-all",
        "data",
        "bench",
        "grade",
    ]


def test_only_the_chosen_command_declares_its_options():
    parser = build_parser(["prepare", "--help"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    declared = {name: len(p._actions) > 1 for name, p in sub.choices.items()}
    assert declared["prepare"] and not declared["train"] and not declared["bench"]


def test_cli_is_thin():
    import inspect

    from minireason import cli

    handlers = [f for name, f in vars(cli).items() if name.startswith("run_") and callable(f)]
    assert len(handlers) >= 12
    for f in handlers:  # each handler a few lines that call the package
        assert len(inspect.getsource(f).splitlines()) <= 30, f.__name__


# The commands whose options are declared by their stage (minireason.options), and the config
# class of each.
DECLARED = {
    ("demo",): "minireason.demo:DemoConfig",
    ("attention-example",): "minireason.course.worked_example:ExampleConfig",
    ("prepare",): "minireason.prep.prepare:PrepareConfig",
    ("train",): "minireason.train.recipe:RecipeConfig",
    ("data", "fetch"): "minireason.data.fetch:FetchConfig",
    ("bench", "train"): "minireason.bench.train:BenchTrainConfig",
    ("bench", "generate"): "minireason.bench.generate:BenchGenerateConfig",
    ("bench", "kernels"): "minireason.bench.kernels:KernelBenchConfig",
    ("bench", "gpu-train"): "minireason.bench.gpu_train:GpuTrainBenchConfig",
    ("bench", "focus"): "minireason.prep.focus:FocusBenchConfig",
    ("grade",): "minireason.course.grading:GradeConfig",
}


def _config(path):
    import importlib

    module, _, name = DECLARED[path].partition(":")
    return getattr(importlib.import_module(module), name)


def _subparser(path):
    parser = build_parser(list(path))
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("path", list(DECLARED), ids=" ".join)
def test_declared_options_read_well(path):
    parser = _subparser(path)
    assert parser.description == _config(path).description
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{action.dest}: no help"
        if action.option_strings and action.nargs != 0 and not action.choices:
            assert action.metavar, f"{action.dest}: argparse's metavar ({action.dest.upper()})"


@pytest.mark.parametrize("path", list(DECLARED), ids=" ".join)
def test_a_declared_bound_is_enforced_by_the_cli_and_by_the_stage(path, capsys):
    from minireason.options import check_values, declared, flag_of

    bounded = [(f, o) for f, o in declared(_config(path)) if o.min is not None and o.cli]
    for f, opt in bounded:
        flag, below = flag_of(f, opt), opt.min - 1
        assert main([*path, flag, str(below)]) == 2
        err = capsys.readouterr().err
        assert f"argument {flag}: must be >= {opt.min}, got {below}" in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
        with pytest.raises(ValueError, match=f"^{flag} must be >= {opt.min}, got"):
            check_values(_config(path), **{f.name: [below] if opt.nargs else below})


def test_data_list_says_what_it_lists():
    assert "each known dataset" in _subparser(("data", "list")).description


def test_an_option_keeps_its_stages_default():
    from minireason.bench.train import REFERENCE_BATCH
    from minireason.nn.model import GPTConfig
    from minireason.prep.prepare import PrepareConfig
    from minireason.prep.tokenizer import DEFAULT_VOCAB_SIZE, MIN_VOCAB_SIZE
    from minireason.train.run import Decoding

    args = build_parser().parse_args(["prepare", "--reviews", "R", "--out", "O"])
    assert args.vocab_size == DEFAULT_VOCAB_SIZE and args.context == PrepareConfig.context
    vocab = next(f for f in fields(PrepareConfig) if f.name == "vocab_size")
    assert vocab.metadata["option"].min == MIN_VOCAB_SIZE  # the tokenizer's own lower bound
    args = build_parser().parse_args(["bench", "train"])
    assert (args.batch_size, args.n_embd) == (REFERENCE_BATCH, GPTConfig.n_embd)
    args = build_parser().parse_args(["bench", "generate"])
    decoding = Decoding()
    assert (args.candidates, args.max_new_tokens) == (
        decoding.n_candidates,
        decoding.max_new_tokens,
    )


# The metavars of --help: a count (N), a top-k (K), sequence lengths (T), seconds (S),
# megabytes (MB), a seed, a weight (W), an id, free text, a name, a path, a scheduler's
# address, a folder, a file (with its kind when it has one), or a name or a file.
METAVARS = {"N", "K", "T", "S", "MB", "SEED", "W", "ID", "TEXT", "NAME", "PATH", "ADDRESS"}
METAVARS |= {"DIR"}
METAVARS |= {"FILE", "FILE.json", "FILE.jsonl", "FILE.png", "FILE.html", "FILE.csv", "OUT.zip"}
METAVARS |= {"SECTION.KEY=VALUE"}  # train --set, demo --set
METAVARS |= {"NAME|FILE", "all|FILE"}


def _every_parser() -> dict[tuple, argparse.ArgumentParser]:
    """Every command's and subcommand's parser (and the top level's), by command path."""
    parsers = {}

    def walk(parser, path):
        parsers[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))

    walk(build_parser(), ())
    return parsers


@pytest.mark.parametrize("path", list(_every_parser()), ids=lambda p: " ".join(p) or "top")
def test_every_option_has_a_sentence_and_a_metavar_of_the_set(path):
    parser = _every_parser()[path]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            for sub in action._choices_actions:  # each subcommand's line in the listing
                assert sub.help and len(sub.help.split()) >= 2, f"{name} {sub.dest}: no help"
            continue
        assert action.help and len(action.help.split()) >= 2, f"{name}: no sentence of help"
        if action.nargs == 0 or action.choices:  # a flag, or its choices shown in braces
            assert action.metavar is None, f"{name}: {action.metavar}"
        else:
            assert action.metavar in METAVARS, f"{name}: metavar {action.metavar!r}"
