"""Every sub-command answers --help; the top level explains itself."""

import argparse

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
