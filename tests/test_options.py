"""Options declared once (minireason.options): declaration -> parser -> config, and a bound
enforced alike by the command line and by the stage."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from minireason.options import (
    add_options,
    bounded,
    check,
    check_values,
    declared,
    from_args,
    option,
)


@dataclass
class Toy:
    """A config with one option of each kind."""

    source: str = option(positional=True, help="what to read")
    out: str = option(metavar="DIR", help="where to write")
    size: int = option(8, min=1, max=64, help="how many")
    rate: float = option(0.5, min=0.001, metavar="S", help="seconds between")
    mode: str = option("fast", choices=("fast", "slow"), help="how")
    seed: int | None = option(None, metavar="SEED", help="a seed (default: none)")
    lens: tuple = option((2, 4), kind=int, min=1, nargs="+", metavar="T", help="lengths")
    top_k: int = option(3, min=0, flag="-k", metavar="K", help="best kept")
    strict: bool = option(False, help="stop at the first problem")
    hidden: int = option(5, min=0, cli=False, help="not on the command line")
    tags: tuple = option((), repeat=True, kind=int, min=0, flag="--tag", help="again for more")
    progress: bool = True  # not an option


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_options(parser, Toy)
    return parser


def test_the_declaration_is_the_parser():
    parser = _parser()
    actions = {a.dest: a for a in parser._actions}
    assert [f.name for f, _ in declared(Toy)][-1] == "tags"  # progress is not an option
    assert "hidden" not in actions and "progress" not in actions
    assert actions["out"].required and actions["out"].metavar == "DIR"
    assert actions["size"].default == 8 and actions["size"].metavar == "N"  # an int's metavar
    assert actions["mode"].choices == ["fast", "slow"]
    assert actions["lens"].default == [2, 4] and actions["lens"].nargs == "+"
    assert actions["top_k"].option_strings == ["-k"] and actions["top_k"].metavar == "K"
    assert actions["strict"].default is False and actions["strict"].nargs == 0
    assert actions["source"].option_strings == []  # positional
    for name in ("out", "size", "rate", "mode", "seed", "lens", "top_k", "strict"):
        assert actions[name].help, name


def test_parsed_args_round_trip_to_the_config():
    args = _parser().parse_args(["in.txt", "--out", "o", "-k", "0", "--lens", "7", "9"])
    cfg = from_args(Toy, args, progress=False)
    assert cfg == Toy("in.txt", "o", top_k=0, lens=(7, 9), progress=False)
    check(cfg)  # what the parser took, the stage takes
    args = _parser().parse_args(["x", "--out", "o", "--size", "64", "--strict"])
    assert from_args(Toy, args) == Toy("x", "o", size=64, strict=True)
    assert from_args(Toy, args, out="elsewhere").out == "elsewhere"  # the caller's value wins


def test_a_repeated_option_collects_its_values_in_order():
    args = _parser().parse_args(["x", "--out", "o", "--tag", "3", "--tag", "1"])
    assert from_args(Toy, args).tags == (3, 1)
    assert from_args(Toy, _parser().parse_args(["x", "--out", "o"])).tags == ()
    with pytest.raises(ValueError, match=r"^--tag must be >= 0, got -1"):
        check_values(Toy, tags=(2, -1))


@pytest.mark.parametrize(
    "argv,message,value",
    [
        (["--size", "0"], "argument --size: must be >= 1, got 0", 0),
        (["--size", "65"], "argument --size: must be <= 64, got 65", 65),
        (["--size", "x"], "argument --size: expected int, got 'x'", "x"),
        (["--rate", "0"], "argument --rate: must be >= 0.001, got 0", 0),
        (["--lens", "3", "0"], "argument --lens: must be >= 1, got 0", [3, 0]),
        (["--mode", "slowest"], "argument --mode: invalid choice: 'slowest'", "slowest"),
    ],
)
def test_a_bound_is_one_fact_for_the_parser_and_the_stage(argv, message, value, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["x", "--out", "o", *argv])
    assert message in capsys.readouterr().err
    name = argv[0].lstrip("-")
    with pytest.raises(ValueError, match=f"^--{name} must be"):
        check_values(Toy, **{name: value})


def test_check_names_the_option_in_the_command_lines_words():
    check(Toy("x", "o"))
    with pytest.raises(ValueError, match=r"^--size must be >= 1, got 0$"):
        check(Toy("x", "o", size=0))
    with pytest.raises(ValueError, match=r"^--size must be an integer, got 2.5$"):
        check(Toy("x", "o", size=2.5))
    with pytest.raises(ValueError, match=r"^--size must be an integer, got True$"):
        check(Toy("x", "o", size=True))
    with pytest.raises(ValueError, match=r"^--mode must be one of \('fast', 'slow'\), not 'x'$"):
        check(Toy("x", "o", mode="x"))
    with pytest.raises(ValueError, match=r"^--hidden must be >= 0, got -1$"):
        check(Toy("x", "o", hidden=-1))  # declared, not on the command line, still checked
    with pytest.raises(ValueError, match=r"^-k must be >= 0, got -1$"):
        check(Toy("x", "o", top_k=-1))
    with pytest.raises(ValueError, match=r"^--rate must be a number, got '1'$"):
        check(Toy("x", "o", rate="1"))
    check(Toy("x", "o", seed=None, rate=2))  # None where the default is None; an int as float


def test_bounded_parses_text():
    assert bounded(int, 1)("3") == 3 and bounded(float, 0.5, 1)("0.75") == 0.75
    with pytest.raises(argparse.ArgumentTypeError, match="must be <= 1, got 2"):
        bounded(float, 0, 1)("2")


def test_a_mutable_default_is_refused():
    with pytest.raises(TypeError, match="immutable"):
        option([1, 2], help="x")
