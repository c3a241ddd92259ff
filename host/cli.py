"""The ``spinemu`` command line: one subcommand per module under :mod:`spinemu.host`.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``, plus a module
docstring whose first line is the command's one-line help. Errors meant for the user are raised as
:class:`UserError` and printed as ``spinemu <command>: error: ...`` with exit status 2, never as a
traceback.
"""

import argparse
import importlib
import sys

import spinemu

__all__ = ["UserError", "main"]

# command name -> module under spinemu.host
COMMANDS = {
    "noise": "noise_cmd",
    "bench": "bench_cmd",
    "calibrate": "calibrate_cmd",
    "model": "model_cmd",
    "reconstruct": "reconstruct_cmd",
    "train": "train_cmd",
    "evaluate": "evaluate_cmd",
    "serve": "serve_cmd",
    "program": "program_cmd",
    "build": "build_cmd",
    "demo": "demo_cmd",
}


class UserError(Exception):
    """An error in what the user asked for or supplied; the message says what and where."""


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="spinemu",
        description="Emulate stochastic spin neurons on FPGAs.",
    )
    parser.add_argument("--version", action="version", version=f"spinemu {spinemu.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"spinemu.host.{module_name}")
        summary = (module.__doc__ or "").strip().splitlines()[0]
        cmd = sub.add_parser(name, help=summary, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args._run(args) or 0
    except UserError as error:
        print(f"spinemu {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spinemu {args.command}: interrupted", file=sys.stderr)
        return 130
