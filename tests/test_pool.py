"""A pool of designs on one host: jobs spread by demand, results in order and equal to the golden
model's, a board that fails leaves and its jobs run on the others, every board gone is an error
naming each; and `--url` repeated on reconstruct and evaluate."""

import json
import threading
import time

import numpy as np
import pytest

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import fitted_config, job_inputs
from spinemu.hdl.model_image import ModelImage
from spinemu.host.cli import main
from spinemu.host.errors import SpinemuError
from spinemu.host.job_runner import JobResult
from spinemu.host.models import DEFAULT_MODEL
from spinemu.host.pool import PoolRunner, batches
from spinemu.host.runners import open_runner
from spinemu.sim.board import start_server
from spinemu.sim.engine_model import run_jobs

MODEL = ModelImage.read(DEFAULT_MODEL)
ARGS = ["--count", "40", "--samples", "3", "--occlusion", "random", "--seed", "5"]


class _Fake:
    """A board's runner that gives the golden counts (job index i: counts of all i) and fails
    from its ``fail_at``-th batch on."""

    def __init__(self, url, fail_at=None, lanes=4, barrier=None):
        self.url, self.fail_at, self.lanes, self.batches, self.closed = url, fail_at, lanes, [], False
        self.barrier, self.calls = barrier, 0

    def run(self, inputs, seeds, samples, *, progress=None, bar=True):
        assert bar is False                     # the pool draws the one bar
        self.calls += 1
        if self.barrier is not None and self.calls == 1:
            self.barrier.wait(timeout=30)       # every board takes a first batch
        if self.fail_at is not None and len(self.batches) >= self.fail_at:
            raise SpinemuError(f"{self.url}: no answer")
        self.batches.append(list(seeds))
        time.sleep(0.005)                       # a board takes time: the others get their turn
        counts = np.repeat(np.asarray(seeds)[:, None], 3, axis=1)
        return JobResult(counts, np.full(len(seeds), 7), 0.0)

    def close(self):
        self.closed = True


def test_batches_shrink_at_the_end_so_the_boards_finish_together():
    sizes = [end - at for at, end in batches(256, 2)]
    assert sizes[:13] == [16] * 13 and sizes[13:] == [12, 9, 7, 5, 4, 4, 4, 3]
    assert batches(256, 2)[0] == (0, 16) and batches(256, 2)[-1] == (253, 256)
    assert [end - at for at, end in batches(10, 2)] == [4, 4, 2] and batches(0, 3) == []
    assert sum(end - at for at, end in batches(1000, 3, 32)) == 1000


def test_jobs_spread_over_the_boards_in_order():
    boards = [_Fake("a://1"), _Fake("b://2")]
    pool = PoolRunner(boards, batch=4)
    done = []
    result = pool.run(np.zeros((37, 2)), list(range(37)), 2, progress=done.append)
    np.testing.assert_array_equal(result.counts[:, 0], np.arange(37))
    assert result.cycles.tolist() == [7] * 37 and sum(done) == 37
    ran = sorted(s for b in boards for batch in b.batches for s in batch)
    assert ran == list(range(37))                           # each job once
    assert pool.left == [] and pool.lanes == 4
    pool.close()
    assert all(b.closed for b in boards)


def test_a_failing_board_leaves_and_the_others_run_its_jobs():
    first = threading.Barrier(3)
    boards = [_Fake("a://1", fail_at=1, barrier=first), _Fake("b://2", barrier=first),
              _Fake("c://3", fail_at=0, barrier=first)]
    pool = PoolRunner(boards, batch=3)
    result = pool.run(np.zeros((50, 2)), list(range(50)), 2)
    np.testing.assert_array_equal(result.counts[:, 0], np.arange(50))
    assert sorted(url for url, _ in pool.left) == ["a://1", "c://3"]
    assert all("no answer" in why for _, why in pool.left)
    ran = sorted(s for b in boards for batch in b.batches for s in batch)
    assert ran == list(range(50))                           # nothing lost, nothing twice
    # a board that left takes no part in the next run
    again = pool.run(np.zeros((5, 2)), list(range(5)), 2)
    assert again.counts.shape == (5, 3) and len(boards[0].batches) == 1
    np.testing.assert_array_equal(again.counts[:, 0], np.arange(5))


def test_a_batch_back_from_a_failing_board_waits_for_the_last_one():
    """The queue may be empty while a board still runs: its batch, if it fails, must still run."""
    slow = threading.Event()

    class Late(_Fake):
        def run(self, inputs, seeds, *args, **kwargs):
            slow.wait(timeout=30)               # fails only after the other board found no work
            return super().run(inputs, seeds, *args, **kwargs)

    boards = [Late("a://1", fail_at=0), _Fake("b://2")]
    pool = PoolRunner(boards, batch=10)
    threading.Timer(0.2, slow.set).start()
    result = pool.run(np.zeros((10, 2)), list(range(10)), 2)
    np.testing.assert_array_equal(result.counts[:, 0], np.arange(10))
    assert [url for url, _ in pool.left] == ["a://1"]
    assert sorted(s for batch in boards[1].batches for s in batch) == list(range(10))


def test_every_board_gone_names_each():
    pool = PoolRunner([_Fake("a://1", fail_at=1), _Fake("b://2", fail_at=0)], batch=2)
    with pytest.raises(SpinemuError, match=r"every design of the pool left.*a://1.*b://2|"
                                           r"every design of the pool left.*b://2.*a://1"):
        pool.run(np.zeros((9, 2)), list(range(9)), 2)


@pytest.fixture(scope="module")
def two_boards():
    with start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD) as a, \
            start_server("golden", fitted_config(MODEL, 2), MAX_PAYLOAD) as b:
        yield a, b


def test_a_pool_of_served_designs_equals_golden(two_boards):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 17, size=(60, 64))
    masks = rng.integers(0, 2, size=(60, 64))
    inputs, seeds = job_inputs(images, masks), [int(s) for s in rng.integers(0, 2 ** 63, 60)]
    with open_runner(url=[b.url for b in two_boards], model=MODEL) as pool:
        assert isinstance(pool, PoolRunner) and pool.lanes == [4, 2]
        before = [r.client.status().jobs for r in pool.runners]   # the boards serve other tests
        first = threading.Barrier(2)
        for runner in pool.runners:
            runner.run = _gated(runner.run, first)
        result = pool.run(inputs, seeds, 4)
        np.testing.assert_array_equal(result.counts, run_jobs(MODEL, inputs, seeds, 4))
        jobs = [r.client.status().jobs - b for r, b in zip(pool.runners, before, strict=True)]
        # both boards worked (a job the client resent after a timeout, under load, runs twice)
        assert sum(jobs) >= 60 and min(jobs) > 0


def test_a_board_that_stops_answering_leaves_the_pool(tmp_path):
    inputs = job_inputs(np.ones((40, 64), int), np.ones((40, 64), int))
    seeds = list(range(40))
    with start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD) as a:
        b = start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD)
        with open_runner(url=[a.url, b.url], model=MODEL, timeout=0.3) as pool:
            pool.batch, first = 4, threading.Barrier(2)
            pool.runners[0].run = _gated(pool.runners[0].run, first)
            pool.runners[1].run = _gated(pool.runners[1].run, first, b)
            result = pool.run(inputs, seeds, 2)
        np.testing.assert_array_equal(result.counts, run_jobs(MODEL, inputs, seeds, 2))
        assert [url for url, _ in pool.left] == [b.url]


def _gated(run, first, server=None):
    """``run`` of a board that waits at ``first`` with the others before its first batch (so
    each takes one) and whose ``server``, if any, is stopped before its second batch."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            first.wait(timeout=30)
        if len(calls) == 2 and server is not None:
            server.stop()
        return run(*args, **kwargs)
    return wrapped


def test_reconstruct_and_evaluate_on_a_pool_equal_golden(two_boards, tmp_path, capsys):
    urls = [arg for b in two_boards for arg in ("--url", b.url)]
    assert main(["reconstruct", "--model", "default", "--out", str(tmp_path / "g.npz"),
                 *ARGS]) == 0
    assert main(["reconstruct", "--model", "default", "--out", str(tmp_path / "p.npz"),
                 *urls, *ARGS]) == 0
    with np.load(tmp_path / "g.npz") as g, np.load(tmp_path / "p.npz") as p:
        for key in ("indices", "mask", "reconstructed", "counts", "seeds"):
            assert np.array_equal(g[key], p[key]), key
    assert "on a pool of 2 designs" in capsys.readouterr().err
    report = tmp_path / "r.json"
    assert main(["evaluate", "--model", "default", "--count", "20", "--samples", "3",
                 "--report", str(report), *urls]) == 0
    figures = json.loads(report.read_text())
    assert figures["backend"] == "pool" and figures["urls"] == [b.url for b in two_boards]
    assert figures["left"] == [] and figures["lanes"] == [4, 2]


def test_a_url_twice_is_refused(two_boards, tmp_path, capsys):
    url = two_boards[0].url
    assert main(["reconstruct", "--model", "default", "--out", str(tmp_path / "r.npz"),
                 "--url", url, "--url", url, *ARGS]) == 2
    assert f"a design appears twice among {url}, {url}" in capsys.readouterr().err


def test_demo_on_a_pool_of_boards(two_boards, tmp_path, capsys):
    urls = [arg for b in two_boards for arg in ("--url", b.url)]
    assert main(["demo", "--count", "12", "--samples", "4", "--out", str(tmp_path), *urls]) == 0
    report = json.loads((tmp_path / "demo.json").read_text())
    assert report["bit_exact"] and report["urls"] == [b.url for b in two_boards]
    assert report["backend"] == "url" and report["lanes"] == [4, 2]
    assert report["cycles_match_model"] is None and report["board_stats"] is None
    assert "running on a pool of 2 designs" in capsys.readouterr().out


def test_bench_board_through_a_pool_of_urls(two_boards, tmp_path, capsys):
    out = tmp_path / "b.json"
    urls = [arg for b in two_boards for arg in ("--url", b.url)]
    assert main(["bench", "board", "--count", "10", "--job-samples", "3", "--json", str(out),
                 *urls]) == 0
    f = json.loads(out.read_text())["designs"]
    assert f["bit_exact"] and f["images"] == 10 and f["urls"] == [b.url for b in two_boards]
    assert f["images_per_s"] > 0 and f["left"] == []
    assert "bit-exact against the golden model: yes" in capsys.readouterr().out
