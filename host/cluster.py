"""A cluster of boards on several hosts, on Dask distributed: one worker per board.

``spinemu cluster worker --scheduler tcp://HOST:PORT --url URL`` runs :func:`run_worker`: a Dask
worker with one thread and the resource ``board=1``, whose :class:`Board` plugin owns the client of
its board. :class:`ClusterRunner` (``--scheduler`` on ``reconstruct`` and ``evaluate``) sends the
model to every worker once (scattered, then loaded on each board once: a worker re-sends it only
for another model, or when the board's STATUS shows it was reset since), then the jobs in batches
of :data:`~spinemu.host.pool.BATCH`, each a Dask task needing a board. Dask spreads the tasks by
demand and runs again elsewhere those of a worker that dies; the results are kept by job index, so
none is lost or counted twice, and they equal the golden model's whatever board ran them (contract
6). A worker whose board stops answering leaves the cluster: its batch runs elsewhere and
:attr:`ClusterRunner.left` says which board left and why. ``docs/cluster.md`` sets up a lab.
"""

import asyncio
import hashlib
import socket
import subprocess
import sys
import threading
import time

import dask
import numpy as np
from distributed import Client, Worker, WorkerPlugin, get_worker, wait
from distributed.security import Security

from spinemu.hdl.model_image import ModelImage

from .errors import InputError, SpinemuError
from .job_runner import JobResult, JobRunner
from .pool import BATCH, batches, common_lanes, left, reasons
from .runners import connect_runner

__all__ = ["RESOURCE", "Board", "BoardLost", "ModelMissing", "ClusterRunner", "LoopbackCluster",
           "run_worker", "security"]

#: The worker resource a board gives: every batch needs one, so only board workers take them.
RESOURCE = "board"
#: A board's worker runs one batch at a time, mostly waiting on its link: it needs no statistical
#: profiler and no checks of its event loop many times a second, which take the GIL (and a
#: share of the 2 cores the simulated boards need) from the board's client.
_QUIET_WORKER = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "1s",
                 "distributed.admin.system-monitor.interval": "2s",
                 "distributed.admin.system-monitor.gil.enabled": False,
                 "distributed.worker.memory.monitor-interval": "1s"}
# How often a waiting run checks that some board is still in the cluster.
_POLL_S = 1.0


class BoardLost(SpinemuError):
    """A worker's board stopped answering (``url``, ``reason``): the worker leaves the cluster."""

    def __init__(self, url, reason):
        super().__init__(url, reason)
        self.url, self.reason = url, reason

    def __str__(self):
        return f"{self.url}: {self.reason}"


def security(ca_file=None, cert=None, key=None):
    """Dask's TLS settings from a CA file and this side's certificate and key (all or none):
    ``None`` for plain TCP."""
    given = [ca_file, cert, key]
    if not any(given):
        return None
    if not all(given):
        raise InputError("TLS needs --tls-ca-file, --tls-cert and --tls-key together")
    return Security(tls_ca_file=str(ca_file), tls_client_cert=str(cert),
                    tls_client_key=str(key), tls_worker_cert=str(cert),
                    tls_worker_key=str(key), require_encryption=True)


class ModelMissing(SpinemuError):
    """A worker got a batch before the model (it joined the cluster after the run began): the
    runner sends it the model (``worker``, its address) and the batch again."""

    def __init__(self, worker):
        super().__init__(worker)
        self.worker = worker

    def __str__(self):
        return f"the worker at {self.worker} does not have the model"


class Board(WorkerPlugin):
    """A worker's board (a Dask worker plugin): its :class:`~spinemu.host.runners.ClientRunner`
    and the model loaded there."""

    name = "spinemu-board"

    def __init__(self, runner):
        self.runner, self.url = runner, runner.url
        # _held: (SHA-256, bytes) of the model given last; _jobs: the STATUS jobs counter the
        # board should show if it still holds it (None: not loaded there)
        self._held, self._jobs, self._lost = None, None, None
        self._lock = threading.Lock()

    def setup(self, worker):
        self._worker = worker

    def teardown(self, worker):
        self.runner.close()

    def hold(self, image, digest=None):
        """Have the board hold the model of bytes ``image`` (of SHA-256 ``digest``, computed if
        not given; kept here for :meth:`run`); loaded only if it is another model than the last
        or the board was reset since (its STATUS jobs counter went back)."""
        digest = digest or hashlib.sha256(image).hexdigest()
        if (self._held is not None and self._held[0] == digest and self._jobs is not None
                and self.runner.client.status().jobs >= self._jobs):
            return
        self._jobs = None
        self.runner.hold(ModelImage.from_bytes(image, source="the cluster's model"))
        self._held, self._jobs = (digest, image), self.runner.client.status().jobs

    def run(self, digest, inputs, seeds, samples):
        """Run one batch of the model of SHA-256 ``digest`` (given to :meth:`hold` before); a
        board that fails leaves, taking its worker out of the cluster."""
        with self._lock:
            if self._lost is not None:
                raise BoardLost(self.url, self._lost)
            if self._held is None or self._held[0] != digest:
                raise ModelMissing(self._worker.address)
            try:
                self.hold(self._held[1], digest)
                result = self.runner.run(inputs, seeds, samples, bar=False)
            except InputError:
                raise                           # the model, not the board
            except SpinemuError as error:
                self._lost = str(error)
                self._worker.loop.add_callback(self._worker.close, reason=f"board lost: {error}")
                raise BoardLost(self.url, self._lost) from None
            self._jobs += len(seeds)
        return _narrow(result.counts), _narrow(result.cycles)


def _narrow(values):
    """Integers ``values`` in the narrowest type that holds them: what crosses the network."""
    if not values.size:
        return values
    lo, hi = int(values.min()), int(values.max())
    return values.astype(np.result_type(np.min_scalar_type(lo), np.min_scalar_type(hi)))


def _board():
    return get_worker().plugins[Board.name]


def _hold(image):
    """Task: load the model on this worker's board; its URL and lanes."""
    board = _board()
    with board._lock:
        board.hold(image)
    return board.url, board.runner.lanes


def _run_batch(digest, inputs, seeds, samples):
    """Task: one batch of jobs on this worker's board."""
    return _board().run(digest, inputs, seeds, samples)


class ClusterRunner(JobRunner):
    """Runs jobs on the boards of the Dask cluster whose scheduler is at ``scheduler``, holding
    ``model`` (read from ``source``, for messages). Before any job runs, it waits up to
    ``timeout`` seconds for ``boards`` workers with a board (at least one) and has every board
    load the model (refused, naming the board, if its design cannot hold it). Workers that join
    later take batches too, loading the model with their first."""

    needs_bar = True

    def __init__(self, scheduler, model, *, source="the model", timeout=10.0, security=None,
                 batch=BATCH, boards=1):
        self.scheduler, self.batch, self.left = scheduler, batch, []
        try:
            self.dask = Client(scheduler, timeout=timeout, security=security,
                               set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise SpinemuError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
        try:
            self._image, self._outputs = model.to_bytes(), model.sizes[-1]
            self._digest = hashlib.sha256(self._image).hexdigest()
            self._start(source, timeout, max(1, boards))
        except BaseException:
            self.dask.close()
            raise

    def _start(self, source, timeout, boards):
        deadline = time.monotonic() + timeout
        while len(workers := self._workers()) < boards:
            if time.monotonic() > deadline:
                if not workers:
                    raise SpinemuError(f"the Dask scheduler at {self.scheduler} has no worker "
                                       f"with a board (start one with `spinemu cluster worker`)")
                break                           # go on with those there
            time.sleep(0.2)
        held = {w: self._send_model(w) for w in workers}
        self.boards = {}
        for worker, future in held.items():
            try:
                self.boards[worker] = future.result()
            except BoardLost as error:
                self.left.append((error.url, error.reason))   # already gone
            except InputError as error:
                raise InputError(f"{source}: {error}") from None
        if not self.boards:
            raise SpinemuError(f"no board of the cluster at {self.scheduler} answers: "
                               f"{reasons(self.left)}")
        urls = [url for url, _ in self.boards.values()]
        self.name = f"the cluster at {self.scheduler} ({len(urls)} boards: {', '.join(urls)})"
        self.lanes = common_lanes([lanes for _, lanes in self.boards.values()])

    def _send_model(self, worker):
        """The model to ``worker``: once each, never with the jobs (a Dask task of its own, not
        scattered data, which Dask may keep on one worker only and lose with it)."""
        return self.dask.submit(_hold, self._image, workers=[worker], allow_other_workers=False,
                                resources={RESOURCE: 1}, pure=False)

    def where(self):
        return {"backend": "cluster", "scheduler": self.scheduler,
                "urls": [url for url, _ in self.boards.values()], "left": left(self.left)}

    def _workers(self):
        # asked of the scheduler each time: Client.scheduler_info() returns a cache that the
        # client's own periodic refresh overwrites with one listing no workers
        info = self.dask.sync(self.dask.scheduler.identity, n_workers=-1)["workers"]
        return [w for w, about in info.items() if about.get("resources", {}).get(RESOURCE)]

    def run(self, inputs, seeds, samples, *, progress=None):
        inputs, seeds = np.asarray(inputs), [int(s) for s in seeds]
        began, jobs = time.perf_counter(), len(inputs)
        wire = _narrow(inputs)                          # a byte an input where it fits
        pending = {}

        def submit(at, end):
            future = self.dask.submit(_run_batch, self._digest, wire[at:end], seeds[at:end],
                                      samples, resources={RESOURCE: 1}, pure=False)
            pending[future] = (at, end)

        def joined(worker):
            try:
                self.boards[worker] = self._send_model(worker).result()
            except BoardLost as error:
                self.left.append((error.url, error.reason))

        for at, end in batches(jobs, max(1, len(self.boards)), self.batch):
            submit(at, end)
        done = {}
        while pending:
            try:
                with self.dask.as_current():
                    finished, _ = wait(list(pending), timeout=_POLL_S,
                                       return_when="FIRST_COMPLETED")
            except TimeoutError:
                finished = ()
            for future in finished:
                at, end = pending.pop(future)
                error = future.exception() if future.status == "error" else None
                if future.status == "cancelled":        # Dask gave up on it: run it again
                    submit(at, end)
                elif error is None:
                    counts, cycles = future.result()  # by job index: a batch run twice counts once
                    done[at] = counts.astype(np.int64), cycles.astype(np.int64)
                    future.release()
                    if progress is not None:
                        progress(end - at)
                elif isinstance(error, BoardLost):     # its worker is leaving: run it elsewhere
                    if error.url not in {url for url, _ in self.left}:
                        self.left.append((error.url, error.reason))
                    submit(at, end)
                elif isinstance(error, ModelMissing):   # a worker that joined late
                    joined(error.worker)
                    submit(at, end)
                else:
                    self._cancel(pending)
                    raise SpinemuError(f"the cluster at {self.scheduler}: {error}") from None
            if pending and not finished and not self._workers():
                self._cancel(pending)
                why = reasons(self.left) or "workers gone"
                raise SpinemuError(f"every board of the cluster at {self.scheduler} left with "
                                   f"jobs unrun ({why})")
        self._note_departures()
        if not jobs:
            return JobResult(np.zeros((0, self._outputs), np.int64), np.zeros(0, np.int64), 0.0)
        parts = [done[at] for at in sorted(done)]
        return JobResult(np.concatenate([c for c, _ in parts]),
                         np.concatenate([c for _, c in parts]), time.perf_counter() - began)

    def _note_departures(self):
        """Workers that left the cluster during the run (killed, or their board lost)."""
        alive, named = set(self._workers()), {url for url, _ in self.left}
        for worker, (url, _) in list(self.boards.items()):
            if worker not in alive:
                del self.boards[worker]
                if url not in named:
                    self.left.append((url, f"its worker {worker} left the cluster"))

    def _cancel(self, pending):
        self.dask.cancel(list(pending))

    def close(self):
        self.dask.close()


def run_worker(scheduler, url, *, host=None, name=None, security=None, timeout=30.0,
               **client_options):
    """Serve the board at ``url`` to the cluster of ``scheduler`` until the worker stops (the
    scheduler closes, the process is interrupted, or the board stops answering:
    :class:`BoardLost`). The board is IDENTIFIED before the worker joins, so a URL that does not
    answer fails here; a scheduler that cannot be reached in ``timeout`` seconds is an error.
    ``client_options`` go to the board's :class:`~spinemu.host.client.Client`."""
    runner = connect_runner(url, **client_options)
    board = Board(runner)

    async def serve():
        try:
            worker = Worker(scheduler, nthreads=1, resources={RESOURCE: 1}, host=host,
                            name=name or url, security=security, plugins=(board,),
                            death_timeout=timeout)
            async with worker:
                await worker.finished()
        except (OSError, TimeoutError) as error:
            raise SpinemuError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None

    try:
        with dask.config.set(_QUIET_WORKER):
            asyncio.run(serve())
    finally:
        runner.close()
    if board._lost is not None:
        raise BoardLost(url, board._lost)


class LoopbackCluster:
    """A Dask scheduler and one ``spinemu cluster worker`` per URL of ``urls``, each a process of
    its own on 127.0.0.1, for tests and ``spinemu bench pool``; use it as a context manager (it
    stops them all). :attr:`address` is the scheduler's; :meth:`kill` stops a worker at once."""

    def __init__(self, urls, *, timeout=60.0):
        with socket.socket() as probe:             # a free port for the scheduler
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
             str(port), "--no-dashboard"], **quiet)
        self.timeout, self.workers = timeout, []
        for url in urls:
            self.add(url)

    def add(self, url):
        """Start one more worker, for the board at ``url``."""
        self.workers.append(subprocess.Popen(
            [sys.executable, "-m", "spinemu", "cluster", "worker", "--scheduler", self.address,
             "--url", url, "--host", "127.0.0.1", "--connect-timeout", str(self.timeout)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def kill(self, index):
        """Kill worker ``index`` (SIGKILL: no goodbye to the scheduler)."""
        self.workers[index].kill()

    def close(self):
        for process in (*self.workers, self.scheduler):
            process.terminate()
        for process in (*self.workers, self.scheduler):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
