"""Serve a board to a Dask cluster: `spinemu cluster worker` runs one worker that owns it.

A lab runs Dask's own scheduler (`dask scheduler --host HOST`) on one machine and one
`spinemu cluster worker` per board on the hosts the boards plug into; then `--scheduler
tcp://HOST:8786` on `spinemu reconstruct` or `spinemu evaluate` spreads the jobs over every board
of the cluster, in batches, with the golden model's results. The worker IDENTIFIES its board
before it joins (a URL that does not answer is an error here), gives the cluster the resource
`board=1`, runs one batch at a time, and leaves when its board stops answering. The model comes
once per worker and is loaded once per board. TLS: the same --tls-* files as the scheduler's.
See docs/cluster.md.

examples:
  dask scheduler --host 10.0.0.1 --port 8786
  spinemu cluster worker --scheduler tcp://10.0.0.1:8786 --url /dev/ttyUSB1
  spinemu evaluate --model default --scheduler tcp://10.0.0.1:8786
"""

import sys

from ..cluster import run_worker
from .options import add_tls_arguments, security_from_args

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("role", choices=("worker",), help="what to run (a worker)")
    parser.add_argument("--scheduler", required=True, metavar="ADDRESS",
                        help="the Dask scheduler's address, tcp://HOST:PORT (tls://... with TLS)")
    parser.add_argument("--url", required=True, metavar="URL",
                        help="the board's pyserial URL: /dev/ttyUSB1, or socket://127.0.0.1:PORT "
                             "for `spinemu serve`")
    parser.add_argument("--host", metavar="HOST",
                        help="the address the worker listens on (default: Dask's choice)")
    parser.add_argument("--name", help="the worker's name in the cluster (default: the URL)")
    parser.add_argument("--connect-timeout", type=float, default=30.0, metavar="S",
                        help="give up when the scheduler cannot be reached for this long "
                             "(default: 30)")
    add_tls_arguments(parser)


def run(args):
    print(f"cluster worker: serving {args.url} to {args.scheduler}", file=sys.stderr, flush=True)
    run_worker(args.scheduler, args.url, host=args.host, name=args.name,
               security=security_from_args(args), timeout=args.connect_timeout)
    return 0
