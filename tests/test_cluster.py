"""A cluster of boards on Dask: a scheduler and one `spinemu cluster worker` per simulated board on
loopback, started and stopped here. Results equal the golden model's, with a worker killed and with
a board that stops answering; the model is loaded once per board; bad input fails before any job
runs, in one line."""

import hashlib
import json
import time

import numpy as np
import pytest

from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import fitted_config, job_inputs
from spinemu.hdl.model_image import ModelImage, random_model
from spinemu.host.cli import main
from spinemu.host.cluster import Board, BoardLost, ClusterRunner, LoopbackCluster, ModelMissing
from spinemu.host.errors import InputError, SpinemuError
from spinemu.host.models import DEFAULT_MODEL
from spinemu.sim.board import start_server
from spinemu.sim.engine_model import run_jobs

MODEL = ModelImage.read(DEFAULT_MODEL)
ARGS = ["--count", "40", "--samples", "3", "--occlusion", "random", "--seed", "5"]


def _jobs(count, seed=1):
    rng = np.random.default_rng(seed)
    inputs = job_inputs(rng.integers(0, 17, size=(count, 64)), rng.integers(0, 2, size=(count, 64)))
    return inputs, [int(s) for s in rng.integers(0, 2 ** 63, count)]


@pytest.fixture(scope="module")
def cluster():
    """Two simulated boards of different lanes, each served by a worker."""
    with start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD) as a, \
            start_server("golden", fitted_config(MODEL, 2), MAX_PAYLOAD) as b, \
            LoopbackCluster([a.url, b.url]) as c:
        yield c, (a, b)


def test_jobs_on_the_cluster_equal_golden_and_use_every_board(cluster):
    c, boards = cluster
    inputs, seeds = _jobs(96)
    with ClusterRunner(c.address, MODEL, boards=2, timeout=60, batch=8) as runner:
        assert sorted(runner.where()["urls"]) == sorted(b.url for b in boards)
        assert sorted(runner.lanes) == [2, 4]
        done = []
        result = runner.run(inputs, seeds, 4, progress=done.append)
        np.testing.assert_array_equal(result.counts, run_jobs(MODEL, inputs, seeds, 4))
        assert sum(done) == 96 and runner.left == []
        ran = runner.dask.run(lambda dask_worker: dask_worker.plugins[Board.name]._jobs)
        assert sorted(ran.values())[0] > 0                   # both boards took batches
        again = runner.run(inputs[:5], seeds[:5], 4)
        np.testing.assert_array_equal(again.counts, result.counts[:5])


def test_reconstruct_and_evaluate_on_the_cluster_equal_golden(cluster, tmp_path, capsys):
    c, _ = cluster
    assert main(["reconstruct", "--model", "default", "--out", str(tmp_path / "g.npz"),
                 *ARGS]) == 0
    assert main(["reconstruct", "--model", "default", "--out", str(tmp_path / "c.npz"),
                 "--scheduler", c.address, *ARGS]) == 0
    with np.load(tmp_path / "g.npz") as g, np.load(tmp_path / "c.npz") as k:
        for key in ("indices", "mask", "reconstructed", "counts", "seeds"):
            assert np.array_equal(g[key], k[key]), key
    assert f"on the cluster at {c.address}" in capsys.readouterr().err
    report = tmp_path / "r.json"
    assert main(["evaluate", "--model", "default", "--count", "20", "--samples", "3",
                 "--report", str(report), "--scheduler", c.address]) == 0
    figures = json.loads(report.read_text())
    assert figures["backend"] == "cluster" and figures["scheduler"] == c.address
    assert len(figures["urls"]) >= 1 and figures["left"] == []


def test_a_killed_worker_loses_nothing():
    inputs, seeds = _jobs(120, seed=2)
    with start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD) as a, \
            start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD) as b, \
            LoopbackCluster([a.url, b.url]) as c, \
            ClusterRunner(c.address, MODEL, boards=2, timeout=60, batch=4) as runner:
        done = [0]

        def kill_at_a_third(n):
            done[0] += n
            if done[0] >= 40 and c.workers[0].poll() is None:
                c.kill(0)

        result = runner.run(inputs, seeds, 3, progress=kill_at_a_third)
        assert c.workers[0].poll() is not None                  # it was killed mid-run
        np.testing.assert_array_equal(result.counts, run_jobs(MODEL, inputs, seeds, 3))
        assert [url for url, _ in runner.left] == [a.url]
        assert "left the cluster" in runner.left[0][1]


def test_a_worker_that_joins_after_the_start_gets_the_model_and_takes_batches():
    inputs, seeds = _jobs(64, seed=4)
    with start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD) as a, \
            start_server("golden", fitted_config(MODEL, 2), MAX_PAYLOAD) as b, \
            LoopbackCluster([a.url]) as c, \
            ClusterRunner(c.address, MODEL, timeout=60, batch=4) as runner:
        assert runner.where()["urls"] == [a.url]
        c.add(b.url)
        deadline = time.monotonic() + 60
        while len(runner._workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        result = runner.run(inputs, seeds, 3)
        np.testing.assert_array_equal(result.counts, run_jobs(MODEL, inputs, seeds, 3))
        assert sorted(runner.where()["urls"]) == sorted([a.url, b.url])


def test_a_board_that_stops_answering_takes_its_worker_out():
    inputs, seeds = _jobs(60, seed=3)
    with start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD) as a:
        b = start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD)
        with LoopbackCluster([a.url, b.url]) as c, \
                ClusterRunner(c.address, MODEL, boards=2, timeout=60, batch=4) as runner:
            b.stop()                                           # before any job: it must leave
            result = runner.run(inputs, seeds, 3)
            np.testing.assert_array_equal(result.counts, run_jobs(MODEL, inputs, seeds, 3))
            assert [url for url, _ in runner.left] == [b.url]
            deadline = time.monotonic() + 30
            while c.workers[1].poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert c.workers[1].returncode == 2                 # the worker said why and left


class _Runner:
    """A board's runner that counts model loads; its STATUS jobs counter is ``jobs``."""

    url, lanes = "fake://1", 4

    def __init__(self):
        self.loads, self.jobs = [], 0
        self.client = self

    def status(self):
        return self

    def hold(self, model, *args):
        self.loads.append(model.noise.hash)

    def run(self, inputs, seeds, samples, bar=True):
        self.jobs += len(seeds)
        return type("R", (), {"counts": np.zeros((len(seeds), 1), int),
                              "cycles": np.full(len(seeds), 7)})()


def test_a_board_loads_a_model_once_and_again_after_a_reset():
    runner = _Runner()
    board = Board(runner)
    board.setup(type("W", (), {"address": "tcp://w:1"})())
    image = MODEL.to_bytes()
    digest = hashlib.sha256(image).hexdigest()
    with pytest.raises(ModelMissing, match="the worker at tcp://w:1 does not have the model"):
        board.run(digest, np.zeros((2, 64)), [1, 2], 3)          # a batch before the model
    board.hold(image)
    for _ in range(3):
        board.run(digest, np.zeros((2, 64)), [1, 2], 3)
    assert len(runner.loads) == 1
    runner.jobs = 0                             # the board was reset: its model is gone
    board.run(digest, np.zeros((2, 64)), [1, 2], 3)
    assert len(runner.loads) == 2
    with pytest.raises(ModelMissing):
        board.run("another model", np.zeros((2, 64)), [1, 2], 3)


def test_a_scheduler_that_cannot_be_reached_is_named():
    with pytest.raises(SpinemuError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        ClusterRunner("tcp://127.0.0.1:9", MODEL, timeout=1)


def test_a_scheduler_without_boards_is_refused():
    with LoopbackCluster([]) as c:
        with pytest.raises(SpinemuError, match="has no worker with a board"):
            ClusterRunner(c.address, MODEL, timeout=8)


def test_a_board_that_cannot_hold_the_model_is_refused_before_any_job():
    model = random_model((MODEL.sizes[0], 300, *MODEL.sizes[1:]), seed=1)   # a wider layer
    with start_server("golden", fitted_config(MODEL, 4), MAX_PAYLOAD) as a, \
            LoopbackCluster([a.url]) as c:
        with pytest.raises(InputError, match=a.url.replace(".", r"\.")):
            ClusterRunner(c.address, model, timeout=30)


def test_a_worker_whose_board_does_not_answer_fails_at_once(capsys):
    assert main(["cluster", "worker", "--scheduler", "tcp://127.0.0.1:9",
                 "--url", "socket://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "socket://127.0.0.1:9" in err and "Traceback" not in err


def test_url_and_scheduler_together_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["reconstruct", "--model", "default", "--out", str(tmp_path / "r.npz"),
              "--url", "socket://127.0.0.1:9", "--scheduler", "tcp://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert "--scheduler: not allowed with argument --url" in capsys.readouterr().err


def test_tls_needs_all_three_files(capsys, tmp_path):
    assert main(["reconstruct", "--model", "default", "--out", str(tmp_path / "r.npz"),
                 "--scheduler", "tcp://127.0.0.1:9", "--tls-cert", "c.pem"]) == 2
    assert "TLS needs --tls-ca-file, --tls-cert and --tls-key together" in \
        capsys.readouterr().err


def test_board_lost_survives_pickling():
    import pickle
    error = pickle.loads(pickle.dumps(BoardLost("socket://x:1", "no answer")))
    assert (error.url, error.reason, str(error)) == ("socket://x:1", "no answer",
                                                     "socket://x:1: no answer")
