"""Images per second on one simulated board, on a pool of them and on a Dask cluster of them (the
figures of `spinemu bench pool`).

:func:`pool_bench` starts ``boards`` native simulated boards (:mod:`spinemu.sim.board.native`, each
a process of its own) and streams the same occluded digits, in one run: through one board, through
a :class:`~spinemu.host.pool.PoolRunner` of all of them, through a
:class:`~spinemu.host.cluster.ClusterRunner` on a :class:`~spinemu.host.cluster.LoopbackCluster`
with one worker per board, and once more on that cluster with one worker killed a third of the way
through. Every run's counts are compared with the golden model's; the speed-ups are each run's
images/s over the one board's, against :data:`SPEEDUP_TARGET` (issue #15).
"""

import time

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import fitted_config

from .board_bench import DEMO_SEED, start_board
from .cluster import ClusterRunner, LoopbackCluster
from .datasets import load_dataset
from .jobs import image_jobs
from .runners import open_runner

__all__ = ["SPEEDUP_TARGET", "pool_bench", "pool_targets"]

#: Issue #15: two simulated boards give at least this many times one board's images/s.
SPEEDUP_TARGET = 1.7


def pool_bench(model, count=96, samples=32, lanes=16, inputs_per_cycle=1, *, boards=2,
               bar=None, start=start_board):
    """The figures of `spinemu bench pool` as a JSON-able dict; ``bar(total, label)``, if given,
    makes a progress bar (an object with ``update(n)`` and ``close()``) for each run;
    ``start(config, max_payload)`` starts a simulated board (default: the native one)."""
    jobs = image_jobs(load_dataset("digits"), "bottom", DEMO_SEED, count)
    config = fitted_config(model, lanes, inputs_per_cycle)
    with open_runner("golden", model=model) as golden:
        expected = golden.run(jobs.inputs, jobs.seeds, samples).counts
    began = time.perf_counter()
    started = []
    try:
        for _ in range(boards):
            started.append(start(config, MAX_PAYLOAD))
        start_s = time.perf_counter() - began
        urls = [board.url for board in started]
        runs = [_timed("1 board", open_runner(url=urls[0], model=model), jobs, samples,
                       expected, bar),
                _timed(f"pool of {boards}", open_runner(url=urls, model=model), jobs, samples,
                       expected, bar)]
        with LoopbackCluster(urls) as cluster:
            runner = ClusterRunner(cluster.address, model, boards=boards, timeout=60.0)
            runs.append(_timed(f"cluster of {boards}", runner, jobs, samples, expected, bar,
                               close=False))
            runs.append(_timed(f"cluster of {boards}, one killed", runner, jobs, samples,
                               expected, bar, kill=(count // 3, lambda: cluster.kill(0))))
    finally:
        for board in started:
            board.stop()
    for run in runs:
        run["speedup"] = run["images_per_s"] / runs[0]["images_per_s"]
    return {"images": count, "samples": samples, "lanes": lanes,
            "inputs_per_cycle": inputs_per_cycle, "config": str(config), "boards": boards,
            "start_s": start_s, "runs": runs}


def _timed(label, runner, jobs, samples, expected, bar, *, close=True, kill=None):
    """Run ``jobs`` on ``runner``: its figures. ``kill``: ``(jobs done, action)``, the action
    taken once that many jobs are done."""
    progress = bar(len(jobs), label) if bar is not None else None
    done, killed = [0], [None]

    def advance(n):
        done[0] += n
        if progress is not None:
            progress.update(n)
        if kill is not None and killed[0] is None and done[0] >= kill[0]:
            kill[1]()
            killed[0] = done[0]

    try:
        result = runner.run(jobs.inputs, jobs.seeds, samples, progress=advance)
    finally:
        if progress is not None:
            progress.close()
        if close:
            runner.close()
    mismatched = int((result.counts != expected).any(axis=1).sum())
    return {"run": label, "seconds": result.seconds, "images_per_s": len(jobs) / result.seconds,
            "identical": mismatched == 0, "mismatched_images": mismatched,
            "killed_after": killed[0], "left": runner.where().get("left", [])}


def pool_targets(figures):
    """Issue #15's targets on ``figures`` of :func:`pool_bench`: each a dict of ``target``,
    ``value`` and ``met``."""
    runs = {run["run"]: run for run in figures["runs"]}
    n = figures["boards"]
    pool, cluster = runs[f"pool of {n}"], runs[f"cluster of {n}"]
    killed = runs[f"cluster of {n}, one killed"]
    return [
        {"target": f"pool of {n} / 1 board, images/s >= {SPEEDUP_TARGET}",
         "value": pool["speedup"], "met": pool["speedup"] >= SPEEDUP_TARGET},
        {"target": f"cluster of {n} / 1 board, images/s >= {SPEEDUP_TARGET}",
         "value": cluster["speedup"], "met": cluster["speedup"] >= SPEEDUP_TARGET},
        {"target": "every run identical to the golden model",
         "value": all(run["identical"] for run in figures["runs"]),
         "met": all(run["identical"] for run in figures["runs"])},
        {"target": "a worker killed mid-run, and the run still complete and identical",
         "value": killed["killed_after"] is not None and killed["identical"],
         "met": killed["killed_after"] is not None and killed["identical"]
                and bool(killed["left"])},
    ]
