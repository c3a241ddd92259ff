"""A pool of designs on one host: jobs spread over several boards by demand.

Every board has its own :class:`~spinemu.host.runners.ClientRunner` and a thread of its own, which
takes the next batch of jobs whenever its board is free, so a faster board takes more of them. The
counts come back in the jobs' order, bit-identical to the golden model's whatever board ran a job
(contract 6: a job's counts do not depend on the design). A board that fails (it stops answering
beyond its client's retries, or answers wrongly) leaves the pool: its batch goes back to the
others, and :attr:`PoolRunner.left` says which board left and why. Nothing is lost or run twice
into the results; only when every board has left does the run fail, naming each.
"""

import threading
import time
from collections import deque

import numpy as np

from .errors import SpinemuError
from .job_runner import JobResult, JobRunner

__all__ = ["BATCH", "LAST_BATCH", "PoolRunner", "batches", "common_lanes", "left", "reasons"]

#: Jobs a board takes at a time: enough to keep its client's window full, few enough that the
#: last batches spread over the boards.
BATCH = 16
#: The smallest batch: the last ones shrink to this so that the boards finish together.
LAST_BATCH = 4


def batches(jobs, boards, batch=BATCH):
    """The ``(start, end)`` of each batch of ``jobs`` jobs for ``boards`` boards: ``batch`` jobs,
    then smaller, down to :data:`LAST_BATCH`, once fewer than two batches per board are left (so
    that no board idles for long while another runs a last large batch)."""
    at, out = 0, []
    while at < jobs:
        size = min(batch, max(LAST_BATCH, -(-(jobs - at) // (2 * boards))), jobs - at)
        out.append((at, at + size))
        at += size
    return out


def left(departures):
    """A report's list of the boards that left, from ``(url, reason)`` pairs."""
    return [{"url": url, "reason": why} for url, why in departures]


def reasons(departures):
    """``(url, reason)`` pairs for a message: ``url: reason; ...``."""
    return "; ".join(f"{url}: {why}" for url, why in departures)


def common_lanes(lanes):
    """The lanes of several designs: the one number they share, or the list of each one's."""
    return lanes[0] if len(set(lanes)) == 1 else list(lanes)


class PoolRunner(JobRunner):
    """Runs jobs on every runner of ``runners`` (each a board's
    :class:`~spinemu.host.runners.ClientRunner`), ``batch`` jobs at a time, by demand."""

    needs_bar = True

    def __init__(self, runners, batch=BATCH):
        if not runners:
            raise ValueError("a pool needs at least one board")
        self.runners, self.batch = list(runners), batch
        self.name = f"a pool of {len(self.runners)} designs ({', '.join(r.url for r in runners)})"
        self.lanes = common_lanes([r.lanes for r in self.runners])
        #: ``(url, reason)`` of every board that left the pool, in the order they left
        self.left = []

    def run(self, inputs, seeds, samples, *, progress=None):
        inputs, seeds = np.asarray(inputs), list(seeds)
        jobs = len(inputs)
        active = [r for r in self.runners if r.url not in {url for url, _ in self.left}]
        if not active:
            raise SpinemuError(f"every design of the pool has left: {reasons(self.left)}")
        if not jobs:
            return active[0].run(inputs, seeds, samples, bar=False)
        began = time.perf_counter()
        todo = deque(batches(jobs, len(active), self.batch))
        done, running = {}, [0]
        ready = threading.Condition()

        def next_batch():
            # a board waits while others run: a batch of one that fails comes back to the queue
            with ready:
                ready.wait_for(lambda: todo or not running[0])
                if not todo:
                    return None
                running[0] += 1
                return todo.popleft()

        def work(runner):
            while (batch := next_batch()) is not None:
                at, end = batch
                try:
                    result = runner.run(inputs[at:end], seeds[at:end], samples, bar=False)
                except SpinemuError as error:
                    with ready:
                        todo.appendleft(batch)      # another board runs it
                        self.left.append((runner.url, str(error)))
                        running[0] -= 1
                        ready.notify_all()
                    return
                with ready:
                    done[at] = result
                    running[0] -= 1
                    ready.notify_all()
                if progress is not None:
                    progress(end - at)

        threads = [threading.Thread(target=work, args=(r,), name=f"spinemu-pool-{r.url}")
                   for r in active]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if todo:
            raise SpinemuError(f"every design of the pool left with jobs unrun: "
                               f"{reasons(self.left)}")
        parts = [done[at] for at in sorted(done)]
        return JobResult(np.concatenate([p.counts for p in parts]),
                         np.concatenate([p.cycles for p in parts]), time.perf_counter() - began)

    def where(self):
        return {"backend": "pool", "urls": [r.url for r in self.runners], "left": left(self.left)}

    def close(self):
        for runner in self.runners:
            runner.close()
