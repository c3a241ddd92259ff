"""One way to run engine jobs: a :class:`JobRunner` per place they can run, chosen in one registry.

``runner.run(inputs, seeds, samples) -> JobResult`` runs one job per row of ``inputs`` (the
engine's input vectors, ``(jobs, N_0)``) with its seed and S samples, wherever the runner runs
them: the bit-exact golden model, a simulator of the design (Amaranth, or its Verilog under
Icarus or Verilator), a design behind a pyserial URL (a board, or ``spinemu serve``) through the
:class:`~spinemu.host.client.Client`, or the trained float model of a model's companion file.
Every runner but the float one gives the same counts for the same arguments (contract 6), whatever
its lanes (they set a design's cycles, not its noise schedule). :func:`open_runner` picks one by
name (:data:`RUNNERS`) or URL.
"""

import contextlib
import time

from spinemu.hdl.memory_map import fitted_config
from spinemu.hdl.model_image import ModelError
from spinemu.sim.backends import BACKENDS

from .errors import InputError, SpinemuError
from .job_runner import JobResult, JobRunner

__all__ = ["DEFAULT_LANES", "EngineRunner", "FloatRunner",
           "ClientRunner", "RUNNERS", "open_runner", "connect_runner"]

#: The lanes of the golden model and the simulators unless asked otherwise.
DEFAULT_LANES = 4
#: The slowest clock of a simulated board (a socket:// URL, ``spinemu serve``): the Amaranth
#: simulator's. A board's serial port gets the client's default. Too slow a guess only lengthens
#: the wait for a lost answer to the first job; after it the client times the design itself.
SIMULATED_CLOCK_HZ = 1000


class EngineRunner(JobRunner):
    """The golden model or a simulator of the design (``backend``, a name of
    :data:`~spinemu.sim.backends.BACKENDS`), built just large enough for ``model``."""

    def __init__(self, backend, model, lanes=DEFAULT_LANES, inputs_per_cycle=1):
        try:
            self.config = fitted_config(model, lanes, inputs_per_cycle)
        except ValueError as error:
            raise InputError(f"--lanes: {error}") from None
        self.name, self.lanes, self.model = backend, lanes, model
        # the Amaranth simulator runs one job at a time, slowly (the others finish fast or in a
        # process of their own)
        self.needs_bar = backend == "amaranth"

    def run(self, inputs, seeds, samples, *, progress=None):
        from spinemu.sim.engine_backends import run_engine
        run = run_engine(self.name, self.config, self.model, inputs, [int(s) for s in seeds],
                         samples, progress=progress)
        return JobResult(run.counts, run.cycles, run.seconds, run.job_seconds)


class FloatRunner(JobRunner):
    """The trained float model of ``companion`` (:func:`~spinemu.host.train.load_companion`),
    with noise from the same job seeds drawn from the noise table it was trained with (the
    Gaussian unless its calibration had another): what the integer model approximates."""

    name = "float"

    def __init__(self, companion, lanes=DEFAULT_LANES):
        self.companion, self.lanes = companion, lanes

    def run(self, inputs, seeds, samples, *, progress=None):
        began = time.perf_counter()
        counts = self.companion.network.counts(inputs, [int(s) for s in seeds], samples)
        return JobResult(counts, None, time.perf_counter() - began)


class ClientRunner(JobRunner):
    """The design at ``url`` through a :class:`~spinemu.host.client.Client`, holding ``model``
    (loaded by :func:`open_runner`), which draws its own progress bar. Every failure of the client
    becomes a :class:`~spinemu.host.errors.SpinemuError` naming the URL."""

    def __init__(self, client, url):
        self.client, self.url = client, url
        self.name = f"the design at {url}"
        self.lanes = client.info.config.lanes

    def hold(self, model, source="the model", lanes=None):
        """Load ``model`` (read from ``source``, for messages) into the design, refused with the
        reasons if it cannot hold it; ``lanes``, if given, must be the design's."""
        design = self.client.info.config.lanes
        if lanes is not None and lanes != design:
            raise InputError(f"--lanes {lanes}: the design at {self.url} has {design} lanes "
                             f"(leave --lanes out to use them)")
        with _naming(self.url):
            try:
                self.client.load_model(model)
            except ModelError as error:
                raise InputError(f"{self.url}: {source}: {error}") from None

    def where(self):
        return {"backend": "url", "url": self.url}

    def run(self, inputs, seeds, samples, *, progress=None, bar=True):
        """:meth:`JobRunner.run`, with the client's progress bar unless ``bar`` is False (a
        :class:`~spinemu.host.pool.PoolRunner` draws one for all its boards)."""
        with _naming(self.url):
            result = self.client.run(inputs, seeds, samples, progress=None if bar else False)
        return JobResult(result.counts, result.cycles, result.seconds)

    def close(self):
        self.client.close()


#: The names :func:`open_runner` takes: the float model, then the backends (each an
#: :class:`EngineRunner`).
RUNNERS = ("float", *BACKENDS)


@contextlib.contextmanager
def _naming(url):
    try:
        yield
    except SpinemuError as error:
        if url in str(error):
            raise
        raise SpinemuError(f"{url}: {error}") from None


def open_runner(backend=None, *, url=None, model, source=None, lanes=None, inputs_per_cycle=1,
                companion=None, **client_options):
    """The :class:`JobRunner` for ``backend`` (a name of :data:`RUNNERS`, default golden) or, with
    ``url``, for the design there, holding ``model`` (read from ``source``, for messages). ``url``
    may also be a list of URLs: a :class:`~spinemu.host.pool.PoolRunner` of their designs (one URL
    alone is a plain :class:`ClientRunner`), each loaded with the model before any job runs.

    ``lanes`` (None: the default, or with ``url`` the design's, which it must then equal) and
    ``inputs_per_cycle`` size a simulated design (they change its cycles, never its counts);
    ``companion`` is needed by the float model; ``client_options`` go to the
    :class:`~spinemu.host.client.Client` of a URL. Raises
    :class:`~spinemu.host.errors.SpinemuError` naming what failed: nothing answers at ``url``, the
    design cannot hold the model (with the reasons), the lanes differ.
    """
    if url is not None:
        if backend is not None:
            raise InputError("give a backend or a URL, not both")
        urls = [url] if isinstance(url, str) else list(url)
        if len(set(urls)) != len(urls):
            raise InputError(f"a design appears twice among {', '.join(urls)}")
        runners = []
        try:
            for one in urls:
                runners.append(_open_client(one, model, source or "the model", lanes,
                                            client_options))
        except BaseException:
            for runner in runners:
                runner.close()
            raise
        if len(runners) == 1:
            return runners[0]
        from .pool import PoolRunner
        return PoolRunner(runners)
    backend = backend or "golden"
    if backend not in RUNNERS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(RUNNERS)}")
    lanes = DEFAULT_LANES if lanes is None else lanes
    if backend == "float":
        if companion is None:
            raise InputError("the float model needs the model's companion file")
        return FloatRunner(companion, lanes)
    return EngineRunner(backend, model, lanes, inputs_per_cycle)


def _open_client(url, model, source, lanes, options):
    runner = connect_runner(url, **options)
    try:
        runner.hold(model, source, lanes)
    except BaseException:
        runner.close()
        raise
    return runner


def connect_runner(url, **options):
    """A :class:`ClientRunner` for the design at ``url``, connected and identified but holding no
    model yet (:meth:`ClientRunner.hold`); ``options`` go to the
    :class:`~spinemu.host.client.Client`."""
    from .client import Client
    if url.startswith("socket://"):
        options = {"min_clock_hz": SIMULATED_CLOCK_HZ, **options}
    with _naming(url):
        return ClientRunner(Client.connect(url, **options), url)
