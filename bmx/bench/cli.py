"""The ``bmx-bench`` command line: one subcommand per benchmark; bad input is one line on
stderr and exit code 2."""
import sys

from .. import __version__
from .._cli import ArgumentParser, UsageError
from . import gemm, models, train


def _run_train(args):
    try:
        return train.run(args)
    except RuntimeError as e:
        raise UsageError(str(e)) from None


#: subcommand name -> (function adding its parser to the subparsers, runner(args))
SUBCOMMANDS = {"gemm": (gemm.add_parser, gemm.run_gemm), "models": (models.add_parser, models.run_models),
               "train": (train.add_parser, _run_train)}


def build_parser():
    """The ``bmx-bench`` argument parser, with every subcommand of :data:`SUBCOMMANDS`."""
    parser = ArgumentParser(prog="bmx-bench", description="Benchmarks of the bmx engine.")
    parser.add_argument("--version", action="version", version=f"bmx-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _run in SUBCOMMANDS.values():
        add(sub)
    return parser


def main(argv=None):
    """Entry point of ``bmx-bench``: 0, or 2 with one line on stderr for bad input."""
    try:
        args = build_parser().parse_args(argv)
        SUBCOMMANDS[args.command][1](args)
    except UsageError as e:
        print(f"bmx-bench: error: {e}", file=sys.stderr)
        return 2
    return 0

