"""Run the simulated board: the design's byte stream on a loopback TCP port.

The design (the generated Verilog of the protocol engine compiled by Verilator into a native
program with its own clock loop, or under Icarus in a cocotb bench, the Amaranth simulation, or
the golden model) listens on 127.0.0.1:PORT; a host connects with the pyserial URL
`socket://127.0.0.1:PORT` exactly as to a board's serial port (`spinemu.host.client.Client`,
`spinemu reconstruct --url`, `spinemu evaluate --url`). The design keeps its state (a loaded model)
from one connection to the next, like a board, and serves one connection at a time: a second
client is told at once that the board is in use, and when a client leaves, a job it left running
is aborted and its answers dropped. The first
start of a configuration on Verilator compiles it (a minute or so); later starts take seconds.
Stop with Ctrl-C or SIGTERM, or use --once to stop when the client disconnects.

The design's configuration is a board's default (--board, default icebreaker), one sized for a
layer-size list (--network) or for a model image (--model), each with --lanes to change the lanes.

examples:
  spinemu serve --port 7777
  spinemu serve --backend icarus --model model.bin --lanes 4 --port 7777 --once
  python -c "import spinemu.host.client as c; print(c.Client.connect('socket://127.0.0.1:7777'))"
"""

import signal
import sys
from pathlib import Path

from spinemu.firmware.boards import board as find_board
from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import EngineConfig, fitted_config, sized_config
from spinemu.hdl.model_image import ModelImage
from spinemu.hdl.protocol import WINDOW
from spinemu.sim.backends import BACKENDS
from spinemu.sim.board import DEFAULT_HOST, ServeError, start_server

from . import UserError
from .options import layer_sizes

__all__ = ["add_arguments", "run", "DEFAULT_PORT", "describe_config", "resolve_config"]

DEFAULT_PORT = 7777
_DEFAULT_BOARD = "icebreaker"


def add_arguments(parser):
    parser.add_argument("--backend", choices=BACKENDS, default="verilator",
                        help="what runs the design (default: verilator)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port on {DEFAULT_HOST}; 0 picks a free one "
                             f"(default: {DEFAULT_PORT})")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--board", metavar="BOARD",
                       help=f"use this board's default configuration (default: {_DEFAULT_BOARD})")
    where.add_argument("--network", metavar="N0,N1,...",
                       help="a configuration sized for these layer sizes, inputs first")
    where.add_argument("--model", type=Path, metavar="M.bin",
                       help="a configuration just large enough for this model image, with its "
                            "number formats")
    parser.add_argument("--lanes", type=int, metavar="N",
                        help="neurons computed at once, a power of two (default: the board's; "
                             "4 with --model)")
    parser.add_argument("--inputs-per-cycle", type=int, metavar="W",
                        help="spin inputs each lane adds per cycle, a power of two (default: the "
                             "board's; 1 with --model or --network)")
    parser.add_argument("--max-payload", type=int, default=MAX_PAYLOAD, metavar="BYTES",
                        help=f"largest frame payload, 8..65535 (default: {MAX_PAYLOAD})")
    parser.add_argument("--once", action="store_true",
                        help="stop when the first client disconnects")


def resolve_config(args):
    """The :class:`EngineConfig` and the receive window (bytes) the arguments ask for, and a few
    words saying where from: a board's are those of its build."""
    lanes = 4 if args.lanes is None else args.lanes
    inputs_per_cycle = 1 if args.inputs_per_cycle is None else args.inputs_per_cycle
    try:
        if args.model is not None:
            model = ModelImage.read(args.model)
            return (fitted_config(model, lanes, inputs_per_cycle), WINDOW,
                    f"sized for {args.model}")
        if args.network is not None:
            sizes = layer_sizes(args.network, "--network")
            return (sized_config(sizes, lanes, inputs_per_cycle=inputs_per_cycle), WINDOW,
                    f"sized for {'-'.join(map(str, sizes))}")
        name = args.board or _DEFAULT_BOARD
        try:
            found = find_board(name)
        except KeyError as error:
            raise UserError(error.args[0]) from None
        return (found.configure(args.lanes, inputs_per_cycle=args.inputs_per_cycle),
                found.window, f"the {name} configuration")
    except ValueError as error:
        raise UserError(str(error)) from None


def describe_config(config):
    """One line with the sizes a configuration holds."""
    c: EngineConfig = config
    return (f"{c.lanes} lanes x {c.inputs_per_cycle} inputs a cycle, up to {c.max_layers} layers, "
            f"{c.max_inputs} inputs, "
            f"{c.max_width} neurons per layer, {c.weight_depth} weight words, "
            f"{c.param_depth} parameter entries per lane, a_width {c.fmt.a_width}")


class _Terminated(Exception):
    pass


def _terminate(signum, frame):
    raise _Terminated()


def run(args):
    if not 0 <= args.port <= 0xFFFF:
        raise UserError(f"--port must be 0..65535, not {args.port}")
    if not 8 <= args.max_payload <= 0xFFFF:
        raise UserError(f"--max-payload must be 8..65535, not {args.max_payload}")
    config, window, origin = resolve_config(args)
    kind = "native Verilator" if args.backend == "verilator" else args.backend
    print(f"spinemu serve: {kind} board, {origin}: {describe_config(config)}, a receive window "
          f"of {window} bytes", flush=True)
    if args.backend in ("verilator", "icarus"):
        print("spinemu serve: building the design (the first time for a configuration takes a "
              "while; builds are cached)...", flush=True)
    previous = signal.signal(signal.SIGTERM, _terminate)
    server, stop_error = None, None
    try:
        try:
            server = start_server(args.backend, config, args.max_payload, window=window,
                                  host=DEFAULT_HOST, port=args.port, once=args.once)
        except OSError as error:
            raise UserError(f"cannot listen on {DEFAULT_HOST}:{args.port}: "
                            f"{error.strerror or error}") from None
        print(f"spinemu serve: listening; connect to {server.url}", flush=True)
        if args.backend in ("icarus", "amaranth"):
            print("spinemu serve: this backend runs jobs slowly: give the client time, e.g. "
                  "Client.connect(url, min_clock_hz=1000)", flush=True)
        while not server.wait(0.5):
            pass
        reason = "the client disconnected" if args.once else "the server ended"
    except (KeyboardInterrupt, _Terminated):
        reason = "asked to stop"
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            try:
                server.stop()
            except ServeError as error:
                stop_error = error
    if stop_error is not None:
        print(f"spinemu serve: error: {stop_error}", file=sys.stderr)
        return 1
    print(f"spinemu serve: stopped ({reason})", flush=True)
    return 0
