"""`spinemu bench board` and `spinemu bench link` (spinemu.host.board_bench): the stream through the
simulated board, its time split, the stream through the latency proxy, and the boards' throughput
and load time with requests in flight, checked against hand computations."""

import dataclasses
import json
import math

import numpy as np
import pytest

from spinemu.firmware.boards import BOARDS
from spinemu.hdl.framing import MAX_PAYLOAD
from spinemu.hdl.memory_map import EngineConfig, fitted_config, job_cycles
from spinemu.hdl.model_image import ModelImage, random_model
from spinemu.hdl.protocol import HASH_CYCLES, WINDOW
from spinemu.host.board_bench import (
    BITS_PER_BYTE,
    LINK_RTTS_S,
    _occluded_digits,
    board_rows,
    job_frame_bytes,
    job_wire_bytes,
    link_targets,
    load_frame_bytes,
    load_reports,
    pipelined_seconds,
    stream_link,
    throughput,
)
from spinemu.host.cli import main
from spinemu.host.errors import InputError
from spinemu.host.models import DEFAULT_MODEL
from spinemu.sim.board import start_server
from spinemu.sim.engine_model import run_jobs

SMALL = random_model((8, 4, 2), seed=5)


def _report(board, fmax_mhz, **changes):
    config = BOARDS[board].config
    return {"board": board, "fmax_mhz": fmax_mhz, "clock_mhz": BOARDS[board].clock_hz / 1e6,
            "baud": BOARDS[board].baud, "lanes": config.lanes, "max_payload": 256,
            "config": dataclasses.replace(config, **changes).as_dict()}


def _write(path, report):
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps(report))
    return path


def test_job_wire_bytes_by_hand():
    config = fitted_config(SMALL, 2)
    x, seed, samples = np.arange(8) % 32, 7, 3
    counts = run_jobs(SMALL, [x], [seed], samples)[0]
    # Payloads: WRITE 2 + region 1 + address 4 + 8 one-byte inputs; RUN 2 + seed 8 + samples 2;
    # READ 2 + offset 2 + count 1. Each frame adds CRC 2, COBS 1 (under 254 bytes) and the
    # delimiter 1; each request also has the 0x00 sent before it.
    requests = (15 + 4 + 1) + (12 + 4 + 1) + (5 + 4 + 1)
    # Answers: seq and status, then nothing (WRITE), cycles u32 (RUN), 2 counts u16 (READ).
    answers = (2 + 4) + (6 + 4) + (6 + 4)
    assert job_wire_bytes(SMALL, config, 256, x, seed, samples, counts) == (requests, answers)


def test_job_frame_bytes_by_hand_and_the_digits_figures():
    config = fitted_config(SMALL, 2)
    x, seed, samples = np.arange(8) % 32, 7, 3
    counts = run_jobs(SMALL, [x], [seed], samples)[0]
    # JOB: header 2 + seed 8 + samples 2 + 8 inputs of 5 bits (5 bytes); its answer: header 2 +
    # cycles 4 + 2 counts of 2 bits (1 byte). Each frame adds CRC 2, COBS 1 and the delimiter 1;
    # no 0x00 before a request (only a resend gets one).
    assert config.input_bits == 5
    assert job_frame_bytes(SMALL, config, 256, x, seed, samples, counts) == (17 + 4, 7 + 4)
    # The digits model at S = 32 (128 5-bit inputs, 64 counts of 6 bits): 96 + 58 bytes, at most
    # half of format 3's WRITE, RUN and READ (167 + 150 = 317; docs/protocol.md).
    model = ModelImage.read(DEFAULT_MODEL)
    config = BOARDS["ulx3s"].config
    jobs, _ = _occluded_digits(1)
    x, seed = jobs.inputs[0], int(jobs.seeds[0])
    counts = run_jobs(model, [x], [seed], 32)[0]
    assert job_frame_bytes(model, config, MAX_PAYLOAD, x, seed, 32, counts) == (96, 58)
    assert job_wire_bytes(model, config, MAX_PAYLOAD, x, seed, 32, counts) == (167, 150)
    with pytest.raises(ValueError, match="over the design's 64"):
        job_frame_bytes(model, config, 64, x, seed, 32, counts)


def test_load_frames_are_the_clients_writes_and_identify():
    config = fitted_config(SMALL, 2)
    frames = load_frame_bytes(SMALL, config, 256)
    *writes, identify = frames
    assert writes and all(cycles == 0 and answer == 6 for _, answer, cycles in writes)
    # IDENTIFY: header 2 + 4 framing; its answer waits for the noise table's hash.
    assert identify[0] == 6 and identify[2] == HASH_CYCLES
    assert max(sent for sent, _, _ in frames) <= 256 + 4


def test_pipelined_seconds_by_hand():
    baud, byte_s = 1_000_000, 10e-6
    two = [(100, 10, 0), (100, 10, 0)]
    # A window for both: the second request follows the first on the line; each answer goes back
    # once its request is in: 2 ms of requests, then the last answer's 0.1 ms.
    assert pipelined_seconds(two, 1e6, baud, 1024, 0.0) == pytest.approx(200 * byte_s + 0.0001)
    # Room for one: stop-and-wait, each exchange a round trip plus its bytes.
    rtt = 0.008
    assert pipelined_seconds(two, 1e6, baud, 100, rtt) == pytest.approx(2 * (rtt + 0.0011))
    assert pipelined_seconds(two, 1e6, baud, 1024, rtt, max_in_flight=1) == pytest.approx(
        2 * (rtt + 0.0011))
    # A window for both: one round trip, the second request 1 ms behind the first.
    assert pipelined_seconds(two, 1e6, baud, 1024, rtt) == pytest.approx(rtt + 0.0021)
    # The design's time: 1000 cycles at 1 MHz after each request has come.
    busy = [(100, 10, 1000), (100, 10, 1000)]
    assert pipelined_seconds(busy, 1e6, baud, 1024, 0.0) == pytest.approx(0.001 + 0.002 + 0.0001)
    with pytest.raises(ValueError, match="does not fit a window of 50"):
        pipelined_seconds(two, 1e6, baud, 50, 0.0)


def test_throughput_is_the_slower_of_engine_and_link_and_the_window_bounds_it():
    # sizes 8-4-2, 2 lanes, W = 1, S = 3: groups 2 and 1; seeding 16 streams of 68 cycles (2 bits
    # a cycle) + 2, behind which layer 1's one pass of 2 x (8 + 6) hides, per sample 2 + 1
    # (layer 1 streamed from its cache) + (4 + 2 + 4) for layer 2's one group, counts out
    # 2 x 2 + 5.
    cycles = 2 + 16 * 68 + 3 * 13 + 9
    assert job_cycles(SMALL.sizes, EngineConfig(lanes=2), 3) == cycles
    sent, answered, baud = 100, 40, 1_000_000
    link_s = sent * 10 / baud                      # the larger direction: 1 ms
    fast = throughput(cycles, sent, answered, 10_000_000, baud, rtts=())   # 115 us of engine
    assert fast["engine_s"] == pytest.approx(cycles / 1e7) and BITS_PER_BYTE == 10
    assert fast["link_s"] == pytest.approx(link_s)
    rate = fast["images_per_s"]
    assert rate["engine"] == pytest.approx(1e7 / cycles)
    assert rate["link"] == pytest.approx(1 / link_s)
    assert rate["both"] == pytest.approx(1 / link_s)     # the slower, not the sum of the times
    assert fast["engine_to_link"] == pytest.approx(rate["engine"] / rate["link"])
    assert fast["bottleneck"] == "link"
    # Answers larger than requests: the answers' direction bounds the link.
    back = throughput(cycles, answered, sent, 10_000_000, baud, rtts=())
    assert back["link_s"] == pytest.approx(link_s) and back["bottleneck"] == "link"
    slow = throughput(cycles, sent, answered, 200_000, baud, rtts=(0.0, 0.016))   # 5.745 ms
    assert slow["bottleneck"] == "engine"
    assert slow["images_per_s"]["both"] == pytest.approx(2e5 / cycles)
    # A window of 1024 bytes holds 10 requests of 100: at 16 ms a round trip at most
    # 10 / (16 ms + 1 ms + 5.745 ms + 0.4 ms) = 432/s, above the engine's 174/s.
    direct, far = slow["at_rtt"]
    assert slow["in_flight"] == 10
    assert far["window_bound"] == pytest.approx(10 / (0.016 + 0.001 + cycles / 2e5 + 0.0004))
    assert far["images_per_s"] == pytest.approx(2e5 / cycles) and far["ratio"] == 1.0
    assert direct["bottleneck"] == far["bottleneck"] == "engine"
    # A window of 300 bytes holds 3: then the window is the bottleneck (130/s).
    narrow = throughput(cycles, sent, answered, 200_000, baud, window=300, rtts=(0.016,))
    (point,) = narrow["at_rtt"]
    assert point["bottleneck"] == "window"
    assert point["images_per_s"] == pytest.approx(3 / (0.016 + 0.001 + cycles / 2e5 + 0.0004))
    assert point["ratio"] == pytest.approx(point["images_per_s"] / (2e5 / cycles))
    capped = throughput(cycles, sent, answered, 200_000, baud, rtts=(0.016,), max_in_flight=2)
    assert capped["in_flight"] == 2


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
    assert ulx["cycles"] == job_cycles(model.sizes, BOARDS["ulx3s"].config, 32)
    assert ulx["frames"] == "JOB" and ulx["window"] == WINDOW
    assert (ulx["request_bytes"], ulx["answer_bytes"]) == (96, 58)
    assert ulx["stop_and_wait_bytes"] == [167, 150]
    load = load_frame_bytes(model, BOARDS["ulx3s"].config, 256)
    assert (ulx["load_frames"], ulx["load_bytes"]) == (len(load), sum(r for r, _, _ in load))
    board = BOARDS["ulx3s"]
    for key, hz in (("at_clock", board.clock_hz), ("at_fmax", 49.5e6)):
        point = ulx[key]
        engine, link = hz / ulx["cycles"], board.baud / (10 * 96)    # requests: the larger way
        assert point["clock_hz"] == hz and point["baud"] == board.baud
        assert point["images_per_s"]["engine"] == pytest.approx(engine)
        assert point["images_per_s"]["link"] == pytest.approx(link)
        assert point["images_per_s"]["both"] == pytest.approx(min(engine, link))
        assert point["bottleneck"] == ("engine" if engine <= link else "link")
        assert [p["rtt_s"] for p in point["at_rtt"]] == [0.0, *LINK_RTTS_S]
        # the load: at least its bytes on the line, and longer the longer the round trip
        loads = [p["seconds"] for p in point["load_s"]]
        assert loads[0] >= ulx["load_bytes"] * 10 / board.baud
        assert loads == sorted(loads) and loads[-1] > loads[0]
    nominal = {row["board"]: row for row in board_rows(model, 32, {})}
    assert nominal["ulx3s"]["at_clock"]["clock_hz"] == BOARDS["ulx3s"].clock_hz
    assert nominal["ulx3s"]["baud"] == BOARDS["ulx3s"].baud
    assert "at_fmax" not in nominal["ulx3s"]
    # The digits model fits the iCEBreaker's default build again (1 lane of 8 inputs a cycle)
    ice = nominal["icebreaker"]
    assert ice["fits"] and ice["cycles"] == job_cycles(model.sizes, BOARDS["icebreaker"].config, 32)


def test_board_rows_without_a_report_take_the_boards_window():
    # The ULX3S's 8 KiB window keeps 64 JOBs in flight (the client's most): the whole rate of its
    # engine and link at 16 ms (now the link's: the engine outruns it), where 1024 bytes held 10.
    rows = {row["board"]: row for row in board_rows(ModelImage.read(DEFAULT_MODEL), 32, {})}
    assert rows["icebreaker"]["window"] == WINDOW == 1024
    ulx = rows["ulx3s"]
    assert ulx["window"] == BOARDS["ulx3s"].window == 8192
    at_clock = ulx["at_clock"]
    assert at_clock["bottleneck"] == "link" and at_clock["engine_to_link"] > 1
    far = at_clock["at_rtt"][-1]
    assert far["rtt_s"] == 0.016 and far["ratio"] == 1.0
    assert far["window_bound"] > at_clock["images_per_s"]["both"]


def test_board_rows_fall_back_to_run_and_read_where_a_job_does_not_fit(tmp_path):
    model = random_model((128, 8, 64), seed=2, fmt=BOARDS["ulx3s"].config.fmt)   # few weights
    small = _report("ulx3s", 49.5)
    small["max_payload"] = 64                   # a JOB of the digits takes 92 bytes
    rows = {row["board"]: row for row in
            board_rows(model, 32, load_reports([str(_write(tmp_path / "ulx", small))]))}
    ulx = rows["ulx3s"]
    assert ulx["frames"] == "RUN+READ"
    assert [ulx["request_bytes"], ulx["answer_bytes"]] == ulx["stop_and_wait_bytes"]


def _figures(ratios, bytes_per_image, identical=True, bit_exact=True):
    runs = [{"rtt_s": rtt, "ratio": ratio, "identical": identical,
             "bytes_out_per_image": bytes_per_image[0], "bytes_in_per_image": bytes_per_image[1]}
            for rtt, ratio in zip((0.0, 0.008, 0.016), (1.0, *ratios), strict=True)]
    return {"stop_and_wait_bytes": [167, 150], "bit_exact": bit_exact, "runs": runs}


def test_link_targets():
    met = link_targets(_figures((0.95, 0.91), (96, 58)))
    assert [t["met"] for t in met] == [True, True, True, True]
    assert met[0]["target"] == "images/s at 8 ms >= 0.9 x direct"
    assert met[2]["target"] == "wire bytes per image <= 158 (half of format 3's 317)"
    assert met[2]["value"] == 154
    assert [t["met"] for t in link_targets(_figures((0.95, 0.89), (96, 58)))] == [
        True, False, True, True]
    assert [t["met"] for t in link_targets(_figures((0.95, 0.91), (167, 150)))] == [
        True, True, False, True]
    assert not link_targets(_figures((0.95, 0.91), (96, 58), identical=False))[-1]["met"]
    assert not link_targets(_figures((0.95, 0.91), (96, 58), bit_exact=False))[-1]["met"]


def test_stream_link_through_the_proxy_on_the_golden_board():
    # The golden board (no clock) in place of the native one, and a small model of the digits'
    # shape: the same jobs directly and at each latency, the same counts, the JOB's bytes.
    model = random_model((128, 16, 64), seed=3)
    f = stream_link(model, count=3, samples=4, lanes=2, rounds=2,
                    start=lambda config, max_payload: start_server("golden", config,
                                                                   max_payload))
    assert f["bit_exact"] and f["rounds"] == 2
    assert [run["rtt_s"] for run in f["runs"]] == [0.0, *LINK_RTTS_S]
    assert f["runs"][0]["ratio"] == 1.0
    for run in f["runs"]:
        assert run["identical"] and run["board"] is None and run["resends"] == 0
        assert [run["bytes_out_per_image"], run["bytes_in_per_image"]] == f["job_frame_bytes"]
        assert len(run["images_per_s_rounds"]) == len(run["load_s_rounds"]) == 2
        assert run["images_per_s"] > 0 and run["load_s"] > 0
    # A load through 16 ms takes at least one round trip.
    assert f["runs"][2]["load_s"] > 0.016
    targets = link_targets(f)
    assert targets[-2]["met"] and targets[-1]["met"]        # the bytes, the identical results
    with pytest.raises(ValueError, match="at least 1"):
        stream_link(model, count=3, rounds=0)


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
    # What the link carried per image is what the protocol makes of one job: one JOB (format 4),
    # or format 3's WRITE, RUN and READ.
    carried = [sim["bytes_in_per_image"], sim["bytes_out_per_image"]]
    assert carried in (sim["job_frame_bytes"], sim["job_wire_bytes"])
    assert sim["sim_cycles_per_image"] >= sim["engine_cycles_per_image"]
    ulx = {row["board"]: row for row in figures["boards"]}["ulx3s"]
    assert ulx["report"] == str(report / "report.json")
    assert [ulx["request_bytes"], ulx["answer_bytes"]] == sim["job_frame_bytes"]


@pytest.mark.slow
def test_bench_link_streams_through_the_proxy_and_judges_the_targets(tmp_path, capsys):
    out = tmp_path / "link.json"
    code = main(["bench", "link", "--count", "3", "--job-samples", "2", "--rounds", "1",
                 "--json", str(out)])
    text = capsys.readouterr().out
    figures = json.loads(out.read_text())
    link = figures["link"]
    assert [run["rtt_s"] for run in link["runs"]] == [0.0, *LINK_RTTS_S]
    assert link["bit_exact"] and all(run["identical"] for run in link["runs"])
    for run in link["runs"]:
        assert [run["bytes_out_per_image"], run["bytes_in_per_image"]] == link["job_frame_bytes"]
        assert 0 < run["board"]["working_share"] <= 1 + 1e-9
        assert run["board"]["sim_cycles_per_s"] > 0 and run["ratio_at_direct_sim_speed"] > 0
    # The exit status is the targets' (a 2-sample job is short: the ratios may well miss).
    assert code == (0 if all(t["met"] for t in figures["targets"]) else 1)
    assert "the simulated board has no UART" in text and "targets (issue #14):" in text
    assert f"{link['job_frame_bytes'][0]} + {link['job_frame_bytes'][1]}" in text
    assert {row["board"] for row in figures["boards"]} == set(BOARDS)
    ulx = next(row for row in figures["boards"] if row["board"] == "ulx3s")
    assert math.isfinite(ulx["at_clock"]["load_s"][-1]["seconds"])
