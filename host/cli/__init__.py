"""The ``spinemu`` command line: one subcommand per module of this package.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``, plus a module
docstring whose first line is the command's one-line help; it parses arguments and prints, and
leaves the work to the library. The library's errors (:data:`REPORTED`) and the commands' own
:class:`UserError` are printed as ``spinemu <command>: error: ...`` with exit status 2, never as a
traceback. No library module imports this package.
"""

import argparse
import importlib
import sys

import spinemu
from spinemu.firmware.errors import FirmwareError
from spinemu.hdl.model_image import ModelError
from spinemu.host.errors import SpinemuError
from spinemu.sim.errors import SimulationError

__all__ = ["UserError", "REPORTED", "main"]

COMMANDS = ("noise", "bench", "calibrate", "model", "reconstruct", "train", "evaluate", "serve",
            "program", "build", "demo", "cluster")


class UserError(Exception):
    """An error in what the user asked for on the command line; the message says what."""


#: The errors of the library that mean "this input or this request cannot be done", with a message
#: for the user: the command line reports them in one line.
REPORTED = (UserError, SpinemuError, ModelError, SimulationError, FirmwareError)


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="spinemu",
        description="Emulate stochastic spin neurons on FPGAs.",
    )
    parser.add_argument("--version", action="version", version=f"spinemu {spinemu.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
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
    except REPORTED as error:
        print(f"spinemu {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spinemu {args.command}: interrupted", file=sys.stderr)
        return 130
