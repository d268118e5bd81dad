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


def test_cli_candidate_defaults_follow_the_reasons_module():
    from minireason.reason.scoring import N_CANDIDATES

    parser = build_parser()
    for argv in (
        ["explain", "--run", "R"],
        ["evaluate", "--prepared", "P", "--run", "R"],
        ["bench", "explain", "--checkpoint", "C", "--prepared", "P"],
    ):
        assert parser.parse_args(argv).candidates == N_CANDIDATES, argv
