"""`spinemu bench board` (spinemu.host.board_bench): the stream through the simulated board, its time
split, and the boards' throughput against their UART, checked against hand computations."""

import dataclasses
import json

import numpy as np
import pytest

from spinemu.firmware.boards import BOARDS
from spinemu.hdl.memory_map import fitted_config, job_cycles
from spinemu.hdl.model_image import ModelImage, random_model
from spinemu.host.board_bench import (
    BITS_PER_BYTE,
    board_rows,
    job_wire_bytes,
    load_reports,
    throughput,
)
from spinemu.host.cli import main
from spinemu.host.errors import InputError
from spinemu.host.models import DEFAULT_MODEL
from spinemu.sim.engine_model import run_jobs

SMALL = random_model((8, 4, 2), seed=5)


def _report(board, fmax_mhz, **changes):
    config = BOARDS[board].config
    return {"board": board, "fmax_mhz": fmax_mhz, "clock_mhz": BOARDS[board].clk_hz / 1e6,
            "baud": 1_000_000, "lanes": config.lanes, "max_payload": 256,
            "config": dataclasses.replace(config, **changes).as_dict()}


def _write(path, report):
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps(report))
    return path


def test_job_wire_bytes_by_hand():
    config = fitted_config(SMALL, 2)
    x, seed, samples = np.arange(8) % 32, 7, 3
    counts = run_jobs(SMALL, [x], [seed], samples, 2)[0]
    # Payloads: WRITE 2 + region 1 + address 4 + 8 one-byte inputs; RUN 2 + seed 8 + samples 2;
    # READ 2 + offset 2 + count 1. Each frame adds CRC 2, COBS 1 (under 254 bytes) and the
    # delimiter 1; each request also has the 0x00 sent before it.
    requests = (15 + 4 + 1) + (12 + 4 + 1) + (5 + 4 + 1)
    # Answers: seq and status, then nothing (WRITE), cycles u32 (RUN), 2 counts u16 (READ).
    answers = (2 + 4) + (6 + 4) + (6 + 4)
    assert job_wire_bytes(SMALL, config, 256, x, seed, samples, counts) == (requests, answers)


def test_throughput_by_hand_and_bottleneck_both_ways():
    # sizes 8-4-2, 2 lanes, S = 3: groups 2 and 1; seeding 132 x 2 + 1, layer 1 once 2 x (8 + 3),
    # per sample 3 x 2 + 1 x (4 + 3) + 3, counts out 2 x 2 + 5.
    cycles = 265 + 22 + 3 * 16 + 9
    assert job_cycles(SMALL.sizes, 2, 3) == cycles
    wire, baud = 100, 1_000_000
    uart_s = wire * 10 / baud
    fast = throughput(cycles, wire, 1_000_000, baud)      # 344 us of engine, 1 ms of UART
    assert fast["engine_s"] == pytest.approx(cycles / 1e6)
    assert fast["uart_s"] == pytest.approx(uart_s) and BITS_PER_BYTE == 10
    assert fast["images_per_s"]["engine"] == pytest.approx(1e6 / cycles)
    assert fast["images_per_s"]["uart"] == pytest.approx(1 / uart_s)
    assert fast["images_per_s"]["combined"] == pytest.approx(1 / (cycles / 1e6 + uart_s))
    assert fast["bottleneck"] == "UART"
    slow = throughput(cycles, wire, 100_000, baud)         # 3.44 ms of engine
    assert slow["bottleneck"] == "engine"
    assert slow["images_per_s"]["combined"] == pytest.approx(1 / (cycles / 1e5 + uart_s))


def test_reports_are_read_and_checked(tmp_path):
    ulx = _write(tmp_path / "ulx", _report("ulx3s", 49.5))
    ice = _write(tmp_path / "ice", _report("icebreaker", 17.7))
    reports = load_reports([f"ulx3s={ulx}", str(ice / "report.json")])
    assert set(reports) == {"ulx3s", "icebreaker"}
    assert reports["ulx3s"][0] == ulx / "report.json"
    with pytest.raises(InputError, match="not of icebreaker"):
        load_reports([f"icebreaker={ulx}"])
    with pytest.raises(InputError, match="two reports for ulx3s"):
        load_reports([str(ulx), str(ulx)])
    (tmp_path / "bad.json").write_text(json.dumps({"board": "ulx3s"}))
    with pytest.raises(InputError, match="no fmax_mhz"):
        load_reports([str(tmp_path / "bad.json")])
    with pytest.raises(InputError, match="cannot read"):
        load_reports([str(tmp_path / "missing.json")])


def test_board_rows_use_the_clock_and_the_reported_fmax(tmp_path):
    model = ModelImage.read(DEFAULT_MODEL)
    reports = load_reports([str(_write(tmp_path / "ulx", _report("ulx3s", 49.5))),
                            str(_write(tmp_path / "ice", _report("icebreaker", 17.7,
                                                                 max_inputs=64)))])
    rows = {row["board"]: row for row in board_rows(model, 32, reports)}
    ice, ulx = rows["icebreaker"], rows["ulx3s"]
    assert not ice["fits"] and "64" in ice["reason"]        # that build takes 64 inputs only
    assert ulx["cycles"] == job_cycles(model.sizes, 16, 32)
    wire = ulx["request_bytes"] + ulx["answer_bytes"]
    for key, hz in (("at_clock", 25e6), ("at_fmax", 49.5e6)):
        engine_s, uart_s = ulx["cycles"] / hz, wire * 10 / 1e6
        assert ulx[key]["engine_s"] == pytest.approx(engine_s)
        assert ulx[key]["bottleneck"] == ("engine" if engine_s >= uart_s else "UART")
    nominal = {row["board"]: row for row in board_rows(model, 32, {})}
    assert nominal["icebreaker"]["at_clock"]["clock_hz"] == BOARDS["icebreaker"].clk_hz
    assert "at_fmax" not in nominal["icebreaker"]


@pytest.mark.slow
def test_bench_board_streams_bit_exact_and_splits_the_time(tmp_path, capsys):
    out = tmp_path / "bench.json"
    report = _write(tmp_path / "ulx", _report("ulx3s", 49.5))
    assert main(["bench", "board", "--count", "3", "--job-samples", "2", "--json", str(out),
                 "--report", f"ulx3s={report}"]) == 0
    text = capsys.readouterr().out
    assert "bit-exact against the golden model: yes" in text and "Fmax of the build" in text
    figures = json.loads(out.read_text())
    sim = figures["simulated"]
    assert sim["bit_exact"] and sim["cycles_match_model"] and sim["images"] == 3
    assert sum(sim["shares"].values()) == pytest.approx(1.0)
    assert sum(sim["split_s"].values()) == pytest.approx(sim["seconds"])
    assert sim["images_per_s"] > 0 and sim["sim_cycles_per_s"] > 0
    assert 0 < sim["split_s"]["simulator"] < sim["seconds"]
    assert 0 < sim["python_hidden_s"] < sim["python_cpu_s"]
    # What the link carried per image is what the protocol makes of one job.
    assert [sim["bytes_in_per_image"], sim["bytes_out_per_image"]] == sim["job_wire_bytes"]
    assert sim["sim_cycles_per_image"] >= sim["engine_cycles_per_image"]
    ulx = {row["board"]: row for row in figures["boards"]}["ulx3s"]
    assert ulx["report"] == str(report / "report.json")
    assert [ulx["request_bytes"], ulx["answer_bytes"]] == sim["job_wire_bytes"]
