"""The ``minireason`` command line: thin entry points over the package's modules.

Each sub-command is declared by an ``add_*`` function that builds its parser and sets
``func`` to a handler; handlers import their stage lazily so that ``--help`` stays fast.
A handler returns an exit code. Errors the user can fix (bad paths, bad input) are raised
as :class:`UserError` (or ValueError / FileNotFoundError) and printed as one line, never
as a traceback (set ``MINIREASON_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys


class UserError(Exception):
    """An error the user can fix; its message says what to do."""


# --------------------------------------------------------------------------- foundation


def add_attention_example(sub):
    p = sub.add_parser(
        "attention-example",
        help="the seed document's worked attention example (section 4.3), computed correctly, with errata",
        description=(
            "Rebuild the eight-word example of the seed document's section 4.3, compute the "
            "single-query case and full self-attention with and without the 1/sqrt(d_k) scale, "
            "and print what the document printed next to what is right."
        ),
    )
    p.add_argument(
        "--plot", metavar="FILE.png", help="save a labelled heatmap of the attention weights"
    )
    p.add_argument(
        "--decimals", type=int, default=4, help="digits printed after the point (default 4)"
    )
    p.set_defaults(func=_run_attention_example)


def _run_attention_example(args) -> int:
    from minireason import worked_example

    print(worked_example.report(decimals=args.decimals))
    if args.plot:
        path = worked_example.plot(args.plot)
        print(f"\nheatmap written to {path}")
    return 0


# --------------------------------------------------------------------------- benchmarks
# `minireason bench NAME`: each benchmark adds itself to BENCH_SUBCOMMANDS below.


def add_bench(sub):
    p = sub.add_parser(
        "bench",
        help="benchmarks: measured speed, printed and written as JSON",
        description="Benchmarks. Speed targets live here, never in timed tests.",
    )
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    for add in BENCH_SUBCOMMANDS:
        add(bench_sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


# --------------------------------------------------------------------------- model and training (issue 3)

# --------------------------------------------------------------------------- data pipeline (issue 4)

# --------------------------------------------------------------------------- reasons and evaluation (issue 5)

# --------------------------------------------------------------------------- GPU kernels (issue 6)

# --------------------------------------------------------------------------- course (issue 7)


SUBCOMMANDS = [
    add_attention_example,
    add_bench,
]

BENCH_SUBCOMMANDS = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minireason",
        description=(
            "From-scratch, educational LLM-based recommendation-reason generation. "
            "Run 'minireason COMMAND --help' for each command."
        ),
    )
    from minireason import __version__

    parser.add_argument("--version", action="version", version=f"minireason {__version__}")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=None,
        help="array backend: cpu (NumPy) or cuda (CuPy); default: $MINIREASON_DEVICE or cpu",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if args.device:
            from minireason import backend

            try:
                backend.set_device(args.device)
            except backend.BackendError as exc:
                raise UserError(str(exc)) from exc
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError, PermissionError) as exc:
        if os.environ.get("MINIREASON_DEBUG"):
            raise
        print(f"minireason {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minireason {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
