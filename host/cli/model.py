"""Make and inspect model images: random valid models for trying the engine, and their figures.

`spinemu model random` writes a random but valid model (weights spread over their range, biases,
thresholds and noise chosen so that neurons fire neither always nor never): what the engine and
the simulators can be exercised with before a trained model exists. `spinemu model info` prints a
model image's layer sizes, number formats, multiply-accumulates and size.

examples:
  spinemu model random --shape 128,256,256,64 --seed 1 --out model.bin
  spinemu model info model.bin
"""

from dataclasses import replace
from pathlib import Path

from spinemu.hdl.memory_map import EngineConfig
from spinemu.hdl.model_image import ModelError, ModelImage, random_model

from . import UserError
from .files import write_bytes
from .options import layer_sizes

__all__ = ["add_arguments", "run", "describe"]

#: The number formats of the designs the boards and `spinemu serve` build by default.
DEFAULT_FORMAT = EngineConfig().fmt


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    make = sub.add_parser("random", help="write a random valid model image")
    make.add_argument("--shape", required=True, metavar="N0,N1,...",
                      help="layer sizes from the input on, e.g. 128,256,256,64")
    make.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    make.add_argument("--input-bits", type=int, default=5, metavar="B",
                      help="bits of an input value (default: 5)")
    make.add_argument("--weight-bits", type=int, default=8, metavar="B",
                      help="bits of a weight, 2..8 (default: 8)")
    make.add_argument("--a-width", type=int, default=DEFAULT_FORMAT.a_width, metavar="B",
                      help=f"bits of a pre-activation; a design runs only models of its own "
                           f"(default: {DEFAULT_FORMAT.a_width}, the boards' and `spinemu "
                           f"serve`'s)")
    make.add_argument("--out", type=Path, required=True, metavar="M.bin",
                      help="where to write the image")
    info = sub.add_parser("info", help="print a model image's sizes, formats and costs")
    info.add_argument("model", type=Path, metavar="M.bin", help="the model image")


def _random(args):
    sizes = layer_sizes(args.shape, "--shape")
    if not 0 <= args.seed < 1 << 64:
        raise UserError(f"--seed must be 0..2^64-1, not {args.seed}")
    if not 1 <= args.input_bits <= 16:
        raise UserError(f"--input-bits must be 1..16, not {args.input_bits}")
    if not 2 <= args.weight_bits <= 8:
        raise UserError(f"--weight-bits must be 2..8, not {args.weight_bits}")
    try:
        fmt = replace(DEFAULT_FORMAT, a_width=args.a_width)
        model = random_model(sizes, seed=args.seed, input_bits=args.input_bits,
                             weight_bits=args.weight_bits, fmt=fmt)
    except (ModelError, ValueError) as error:
        raise UserError(f"cannot make a model of shape {args.shape}: {error} (a larger "
                        f"--a-width holds larger pre-activations)") from None
    data = model.to_bytes()
    write_bytes(args.out, data)
    print(f"wrote {args.out} ({len(data):,} bytes, layers {'-'.join(map(str, sizes))})")


def describe(model, size):
    """The lines ``spinemu model info`` prints for ``model``, an image of ``size`` bytes."""
    f = model.fmt
    first = model.sizes[0] * model.sizes[1]
    per_sample = model.macs_per_sample
    later = {1: "no later layers", 2: "layer 2"}.get(model.layers, f"layers 2..{model.layers}")
    return [
        f"layers:        {model.layers} ({' -> '.join(map(str, model.sizes))}; "
        f"{model.sizes[0]} inputs, {model.sizes[-1]} outputs)",
        f"inputs:        {model.input_bits}-bit unsigned",
        f"weights:       {model.weight_bits}-bit signed, "
        f"{sum(w.size for w in model.weights):,} in all",
        f"neuron format: a {f.a.describe()}, theta {f.theta.describe()}, "
        f"sigma {f.sigma.describe()}",
        f"noise table:   {model.noise.describe()}",
        f"MACs:          {first:,} once per job (layer 1) + {per_sample:,} per sample "
        f"({later})",
        f"size:          {size:,} bytes",
    ]


def _info(args):
    model = ModelImage.read(args.model)
    print(f"{args.model}:")
    for line in describe(model, args.model.stat().st_size):
        print("  " + line)


def run(args):
    if args.action == "random":
        _random(args)
    else:
        _info(args)
    return 0
