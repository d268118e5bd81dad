"""Command-line options declared once, beside the stage that owns them.

A stage's options are the fields of a dataclass, its *config*. Each field made by
:func:`option` carries the option's default, its bounds (``min``, ``max``, ``choices``), its
metavar and one help sentence::

    @dataclass
    class PrepareConfig:
        reviews: str = option(metavar="FILE", help="reviews file")
        vocab_size: int = option(4096, min=MIN_VOCAB_SIZE, help="BPE vocabulary size")

The command line reads the declarations: :func:`add_options` turns a config's fields into
argparse arguments (``vocab_size`` is ``--vocab-size``; an int or float one is parsed by
:func:`bounded`, so a value out of bounds is a one-line usage error) and :func:`from_args`
builds the config back from the parsed namespace. The stage reads the same declarations:
:func:`check` refuses a config built in Python whose values are out of bounds, in the same
words. A bound is thus one fact, enforced alike by ``minireason prepare --vocab-size 100``
and by ``prepare(PrepareConfig(..., vocab_size=100))``.

A field made without :func:`option` is not an option; one made with ``cli=False`` is checked
by :func:`check` but not on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING, dataclass

KEY = "option"  # the key of a field's metadata that holds its Option


@dataclass(frozen=True)
class Option:
    """What a config field says about its option, besides its default.

    Attributes:
        help: one sentence, shown by ``--help`` (with the default after it).
        metavar: the value's name in ``--help`` (``N``, ``K``, ``DIR``, ``FILE.json``...);
            None: ``N`` for an int, none for a flag or a choice.
        min, max: the bounds of an int or float value, inclusive (None: unbounded).
        choices: the values allowed (None: any).
        kind: int, float, str or bool (None: read off the field's annotation).
        flag: the option's name (None: ``--`` and the field's name with dashes).
        positional: an argument without a flag (optional when it has a default).
        nargs: argparse's ``nargs`` (``"+"``: one or more values, each checked).
        repeat: the option may be given again and again (``--set A --set B``), its values
            collected in order into a tuple (its default, given none), each checked.
        cli: False for a field that is checked but never on the command line.
    """

    help: str
    metavar: str | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    kind: type | None = None
    flag: str | None = None
    positional: bool = False
    nargs: str | None = None
    repeat: bool = False
    cli: bool = True


def option(default=MISSING, *, help: str, **about):
    """A dataclass field that is an option: ``default`` (none: a required option), ``help``
    and the other attributes of :class:`Option` as keywords."""
    if isinstance(default, (list, dict, set)):
        raise TypeError(f"an option's default must be immutable (a tuple), got {default!r}")
    return dataclasses.field(default=default, metadata={KEY: Option(help=help, **about)})


def declared(config) -> list[tuple[dataclasses.Field, Option]]:
    """The fields of a config class (or instance) that are options, in declaration order."""
    return [(f, f.metadata[KEY]) for f in dataclasses.fields(config) if KEY in f.metadata]


def flag_of(f: dataclasses.Field, opt: Option) -> str:
    """How messages name the option: its flag, or a positional argument's name in capitals."""
    if opt.positional:
        return opt.metavar or f.name.upper()
    return opt.flag or "--" + f.name.replace("_", "-")


def kind_of(f: dataclasses.Field, opt: Option) -> type:
    """int, float, bool or str: ``opt.kind``, else the field's annotation without ``None``
    (``int | None`` is int); anything else is read as str."""
    if opt.kind is not None:
        return opt.kind
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    names = [t.strip() for t in text.split("|") if t.strip() != "None"]
    known = {"int": int, "float": float, "bool": bool, "str": str}
    return known.get(names[0], str) if len(names) == 1 else str


def bounded(kind=int, low=None, high=None):
    """An argparse ``type``: a ``kind`` (int or float) within ``[low, high]`` (None: no
    bound); argparse names the option in its one-line error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if low is not None and not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        if high is not None and not value <= high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
        return value

    return parse


def at_least(low, kind=int):
    """An argparse ``type``: a ``kind`` (int or float) ``>= low`` (:func:`bounded`)."""
    return bounded(kind, low)


def add_options(parser: argparse.ArgumentParser, config: type) -> None:
    """Add an argument to ``parser`` for each option of the config class ``config``, with its
    default, bounds, metavar and help; its ``dest`` is the field's name. Keyword-only fields
    (those of a shared base, such as a run's options) come after the command's own."""
    for f, opt in sorted(declared(config), key=lambda fo: bool(fo[0].kw_only)):
        if not opt.cli:
            continue
        kind, has_default = kind_of(f, opt), f.default is not MISSING
        kw: dict = {"help": opt.help}
        if kind is bool:
            kw["action"] = "store_true"
        elif opt.choices is not None:
            kw["choices"] = list(opt.choices)
        else:
            if kind in (int, float):
                kw["type"] = bounded(kind, opt.min, opt.max)
            kw["metavar"] = opt.metavar or ("N" if kind is int else None)
        if opt.nargs:
            kw["nargs"] = opt.nargs
        if opt.repeat:
            kw["action"] = "append"  # its default: None, read back as the field's own
        elif has_default:
            kw["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
        if opt.positional:
            if has_default and not opt.nargs:
                kw["nargs"] = "?"
            parser.add_argument(f.name, **{k: v for k, v in kw.items() if v is not None})
        else:
            kw["required"] = not has_default
            kw = {k: v for k, v in kw.items() if v is not None}
            parser.add_argument(flag_of(f, opt), dest=f.name, **kw)


def from_args(config: type, args: argparse.Namespace, **given):
    """The config ``config(...)`` of the parsed ``args``: each option's value (several values
    as a tuple), with the fields in ``given`` (values the caller worked out, e.g. a resolved
    path) instead."""
    values = {
        f.name: f.default if opt.repeat and getattr(args, f.name) is None else getattr(args, f.name)
        for f, opt in declared(config)
        if opt.cli
    }
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return config(**{**values, **given})


def check_values(config: type, **values) -> None:
    """Raise ValueError naming the option, in the command line's words, for the first value
    that the declaration of its field in ``config`` refuses (a wrong type, out of bounds,
    not a choice). None passes where the default is None."""
    fields = {f.name: (f, opt) for f, opt in declared(config)}
    for name, value in values.items():
        f, opt = fields[name]
        if value is None and f.default is None:
            continue
        for item in value if opt.nargs or opt.repeat else [value]:
            _check_one(flag_of(f, opt), kind_of(f, opt), opt, item)


def check(config) -> None:
    """:func:`check_values` of every option of the config instance ``config``."""
    check_values(type(config), **{f.name: getattr(config, f.name) for f, _ in declared(config)})


def _check_one(flag: str, kind: type, opt: Option, value) -> None:
    if opt.choices is not None and value not in opt.choices:
        raise ValueError(f"{flag} must be one of {tuple(opt.choices)}, not {value!r}")
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{flag} must be an integer, got {value!r}")
    if kind is float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise ValueError(f"{flag} must be a number, got {value!r}")
    if opt.min is not None and value < opt.min:
        raise ValueError(f"{flag} must be >= {opt.min}, got {value}")
    if opt.max is not None and value > opt.max:
        raise ValueError(f"{flag} must be <= {opt.max}, got {value}")
