"""Options that several commands share: which data set, and what the jobs are and where they run."""

import sys
from pathlib import Path

from tqdm import tqdm

from ..datasets import DATASETS, load_dataset
from ..occlusion import OCCLUSIONS
from ..runners import open_runner
from . import UserError

__all__ = ["layer_sizes", "add_dataset_arguments", "dataset_from_args", "add_job_arguments",
           "open_job_runner", "run_jobs", "report_departures", "add_tls_arguments",
           "security_from_args"]


def layer_sizes(text, option, *, least=2, example="128,256,64"):
    """Layer sizes from ``"128,256,64"``: ``least`` or more integers 1..65535, else a
    :class:`UserError` naming ``option``."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) < least or not all(1 <= n <= 0xFFFF for n in sizes):
        count = {1: "one", 2: "two"}[least]
        raise UserError(f"{option} must be {count} or more layer sizes 1..65535 separated by "
                        f"commas (e.g. {example}), not {text!r}")
    return sizes


def add_dataset_arguments(parser):
    """The command-line options that choose a data set (``train``, ``evaluate``, ``reconstruct``);
    :func:`dataset_from_args` loads what they name."""
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="the data set (default: digits)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="where cifar10 or folder data sets are")
    parser.add_argument("--size", type=int, metavar="N",
                        help="cifar10/folder: block-average the images to N x N (e.g. 8 for the "
                             "digits-sized engine: 64 pixels + 64 mask bits)")
    parser.add_argument("--levels", type=int, metavar="L",
                        help="cifar10/folder: quantise to L grey levels (e.g. 16; default 256)")


def dataset_from_args(args):
    """The data set that :func:`add_dataset_arguments`' options name."""
    return load_dataset(args.dataset, args.data_dir, size=args.size, levels=args.levels)


def add_job_arguments(parser, backends):
    """What the jobs are and where they run, as `reconstruct` and `evaluate` take them: --backend
    (one of ``backends``, default golden) or --url, the data set, --occlusion, --count, --samples,
    --seed and --lanes."""
    target = parser.add_mutually_exclusive_group()
    # default None, not "golden": argparse lets `--backend golden --url U` through otherwise (it
    # tells given from default by identity, and the interned "golden" is the default object)
    target.add_argument("--backend", choices=backends, default=None,
                        help="where the jobs run (default: golden)")
    target.add_argument("--url", metavar="URL", action="append",
                        help="run the jobs on the design at this pyserial URL instead: a board "
                             "(/dev/ttyUSB1) or `spinemu serve` (socket://127.0.0.1:PORT); "
                             "repeat it for a pool of boards, which share the jobs by demand")
    target.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the jobs on the boards of the Dask cluster whose scheduler is "
                             "here (tcp://HOST:PORT; see `spinemu cluster`)")
    add_tls_arguments(parser)
    add_dataset_arguments(parser)
    parser.add_argument("--occlusion", choices=OCCLUSIONS, default="bottom",
                        help="which pixels are hidden (default: bottom)")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="how many test images, from the first (default: all)")
    parser.add_argument("--samples", type=int, default=32, metavar="S",
                        help="samples per image, 1..65535 (default: 32)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the jobs and of random masks, 0..2^64-1 (default: 1)")
    parser.add_argument("--lanes", type=int, default=None,
                        help="engine lanes (a power of two 1..16) of a simulated design; they "
                             "set its cycles, never its counts (default: 4; with --url, the "
                             "design's)")


def add_tls_arguments(parser):
    """Dask's TLS options: the files of :func:`~spinemu.host.cluster.security`."""
    group = parser.add_argument_group("TLS to the Dask cluster (all three, or none)")
    group.add_argument("--tls-ca-file", type=Path, metavar="PEM",
                       help="the certificate authority the cluster's certificates are signed by")
    group.add_argument("--tls-cert", type=Path, metavar="PEM", help="this side's certificate")
    group.add_argument("--tls-key", type=Path, metavar="PEM", help="this side's private key")


def security_from_args(args):
    """Dask's security settings of --tls-ca-file, --tls-cert and --tls-key (None: plain TCP)."""
    from ..cluster import security
    return security(args.tls_ca_file, args.tls_cert, args.tls_key)


def run_jobs(runner, inputs, seeds, samples):
    """``runner.run`` with a progress bar where the runner draws none of its own."""
    with tqdm(total=len(inputs), unit="image", disable=not runner.needs_bar,
              file=sys.stderr) as bar:
        return runner.run(inputs, seeds, samples, progress=bar.update)


def report_departures(runner):
    """Say on stderr which boards left a pool during the run, and why (their jobs ran on the
    others)."""
    for gone in runner.where().get("left", []):
        print(f"warning: {gone['url']} left and its jobs ran on the other boards: "
              f"{gone['reason']}", file=sys.stderr)


def open_job_runner(args, model, source, companion=None):
    """The job runner of --backend, --url or --scheduler (see :func:`add_job_arguments`) holding
    ``model``, read from ``source``."""
    tls = security_from_args(args)
    if args.scheduler is not None:
        from ..cluster import ClusterRunner
        if args.lanes is not None:
            raise UserError("--lanes sizes a simulated design; a cluster's boards have their own")
        return ClusterRunner(args.scheduler, model, source=str(source), security=tls)
    if tls is not None:
        raise UserError("--tls-* are for a Dask cluster (--scheduler)")
    return open_runner(args.backend, url=args.url, model=model, source=str(source),
                       lanes=args.lanes, companion=companion)
