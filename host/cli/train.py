"""Train the all-spin network on a data set and export the model image the design loads.

Dense layers of spin neurons (image and mask in, one spin per pixel out), trained with
sampled spins and random occlusion masks of every kind, quantization-aware, in the default design's
number formats (a Q20.0, theta Q20.8, sigma UQ8.8, 8-bit weights). Writes:

  M.bin   the integer model image (what `spinemu reconstruct` and the boards load)
  M.npz   its companion: the float model (the `float` backend of `spinemu evaluate`), the fixed
          reference classifier (trained on the clean training images only), the training record
  M.png   the training curve (--curve to put it elsewhere)

The same arguments give a byte-identical M.bin (torch runs on one thread; everything random comes
from --seed). With --calibration CALIB.json (from `spinemu calibrate`), network neuron k (layer 1's
neurons first) gets calibration neuron k mod M: its theta and sigma codes go into the image as
they are, and training fits the weights to them (docs/training.md). The calibration's noise table
(its device's shape F: Gaussian, logistic, thermal, nonparametric) is the neurons' noise in
training and in the float model, and goes into the image, so the design draws from it too.

The shipped default model (host/data/digits_model.bin, used by `--model default`) is made by:
  spinemu train --dataset digits --out host/data/digits_model.bin --curve out/digits_model.png

examples:
  spinemu train --dataset digits --out out/model.bin
  spinemu calibrate host/data/example_population.csv --unit mA --neurons 512 --out out/pop.json
  spinemu train --dataset digits --calibration out/pop.json --out out/model_pop.bin
"""

import sys
import time
from pathlib import Path

from spinemu.hdl.memory_map import macs_per_job

from . import UserError
from .files import write_bytes
from .options import add_dataset_arguments, dataset_from_args, layer_sizes

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    from ..train import TrainConfig
    d = TrainConfig()
    add_dataset_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="M.bin",
                        help="the model image to write (the companion M.npz goes beside it)")
    parser.add_argument("--calibration", type=Path, metavar="CALIB.json",
                        help="per-neuron theta and sigma codes and the noise table from "
                             "`spinemu calibrate` (default: ideal Gaussian neurons, theta 0, "
                             "sigma per neuron)")
    parser.add_argument("--curve", type=Path, metavar="PNG",
                        help="where to draw the training curve (default: M.png beside M.bin)")
    parser.add_argument("--hidden", default=",".join(map(str, d.hidden)), metavar="N1,N2,...",
                        help=f"hidden layer sizes (default: {','.join(map(str, d.hidden))})")
    parser.add_argument("--epochs", type=int, default=d.epochs,
                        help=f"training epochs (default: {d.epochs})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    parser.add_argument("--batch", type=int, default=d.batch,
                        help=f"images per step (default: {d.batch})")
    parser.add_argument("--train-samples", type=int, default=d.samples, metavar="K",
                        help=f"sampled hidden states per image per step (default: {d.samples})")
    parser.add_argument("--lr", type=float, default=d.lr,
                        help=f"Adam step size, cosine-annealed (default: {d.lr})")
    parser.add_argument("--known-weight", type=float, default=d.known_weight,
                        help=f"loss weight of a known pixel; a hidden one weighs 1 "
                             f"(default: {d.known_weight})")
    parser.add_argument("--qat-fraction", type=float, default=d.qat_fraction,
                        help=f"last fraction of the epochs trained through the integer rounding "
                             f"(default: {d.qat_fraction})")
    parser.add_argument("--weight-bits", type=int, default=d.weight_bits,
                        help=f"bits of a weight, 2..8 (default: {d.weight_bits})")
    parser.add_argument("--classifier-epochs", type=int, default=d.classifier_epochs,
                        help=f"epochs of the reference classifier (default: {d.classifier_epochs})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    from ..plots import plot_curve
    from ..train import TrainConfig, companion_path, save_companion, train

    hidden = layer_sizes(args.hidden, "--hidden", least=1, example="256,192")
    config = TrainConfig(hidden=hidden, epochs=args.epochs, batch=args.batch,
                         samples=args.train_samples, lr=args.lr, known_weight=args.known_weight,
                         qat_fraction=args.qat_fraction, weight_bits=args.weight_bits,
                         seed=args.seed, classifier_epochs=args.classifier_epochs)
    config.check()
    if args.classifier_epochs < 1:
        raise UserError("--classifier-epochs must be at least 1")
    if args.out.suffix == ".npz":
        raise UserError(f"--out {args.out}: the model image needs a name other than .npz "
                        "(its companion is written as .npz beside it)")
    dataset = dataset_from_args(args)
    began = time.perf_counter()
    print(f"training on {dataset.name} ({dataset.source}), hidden {args.hidden}, "
          f"{config.epochs} epochs, seed {config.seed}"
          + (f", calibration {args.calibration}" if args.calibration else ", ideal neurons"),
          file=sys.stderr)
    trained = train(dataset, config, args.calibration, progress=not args.quiet)
    data = trained.model.to_bytes()
    write_bytes(args.out, data)
    companion = companion_path(args.out)
    save_companion(companion, trained, data)
    curve = args.curve or args.out.with_suffix(".png")
    plot_curve(trained.history, curve,
               f"spinemu train: {dataset.name}, {'-'.join(map(str, trained.model.sizes))}")
    sizes = trained.model.sizes
    once = macs_per_job(sizes, 1) - trained.model.macs_per_sample
    print(f"network {' -> '.join(map(str, sizes))}: {once:,} "
          f"MACs once per image + {trained.model.macs_per_sample:,} per sample; "
          f"final training loss {trained.history['loss'][-1]:.4f}")
    noise = trained.model.noise
    print(f"noise table {noise.name} (hash {noise.hash:08x}), in the image and the float model")
    print(f"trained in {time.perf_counter() - began:.0f} s "
          f"(network {trained.meta['train_seconds']:.0f} s)")
    print(f"wrote {args.out} ({len(data):,} bytes), {companion}, {curve}")
    return 0
