"""psreal profile's in-situ calibration: each figure is the median over repeated calibration
runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def test_in_situ_figures_are_medians_over_the_calibration_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psreal.profiler as profiler
    import psreal.profiler.in_situ as in_situ  # measure_in_situ looks _in_situ_once up there

    runs = iter(
        [
            {
                "compute_s": 3.0,
                "compute_samples_s": [3.0],
                "msg_worker_a": 5e-4,
                "msg_server_a": 1e-4,
                "arbiter_wake_s": 2e-4,
            },
            {
                "compute_s": 1.0,
                "compute_samples_s": [1.0],
                "msg_worker_a": 1e-4,
                "msg_server_a": 9e-4,
                "arbiter_wake_s": 1e-4,
            },
            {
                "compute_s": 2.0,
                "compute_samples_s": [2.0, 2.0],
                "msg_worker_a": 3e-4,
                "msg_server_a": 3e-4,
                "arbiter_wake_s": 9e-4,
            },
        ]
    )

    def once(*_args: Any) -> dict[str, Any]:
        return next(runs) | {"send_b": 1e-10, "recv_b": 2e-10, "samples": {}}

    monkeypatch.setattr(in_situ, "_in_situ_once", once)
    got = profiler.measure_in_situ(None, "cpu", {}, {}, runs=3)  # type: ignore[arg-type]
    assert got["compute_s"] == 2.0 and got["compute_samples_s"] == [
        2.0,
        2.0,
    ]  # the median run's steps
    assert got["msg_worker_a"] == pytest.approx(3e-4) and got["msg_server_a"] == pytest.approx(3e-4)
    assert got["arbiter_wake_s"] == pytest.approx(2e-4)
    assert (got["send_b"], got["recv_b"]) == (1e-10, 2e-10)
    assert len(got["samples"]["runs"]) == 3


def test_more_calibration_runs_join_the_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import psreal.profiler as profiler
    import psreal.profiler.in_situ as in_situ

    def once(*_args: Any) -> dict[str, Any]:
        return {
            "compute_s": 10.0,
            "compute_samples_s": [10.0],
            "msg_worker_a": 1e-3,
            "msg_server_a": 1e-3,
            "send_b": 1e-10,
            "recv_b": 2e-10,
            "samples": {},
        }

    earlier = [
        {
            "compute_s": c,
            "compute_samples_s": [c],
            "msg_worker_a": 1e-4,
            "msg_server_a": 1e-4,
            "send_b": 1e-10,
            "recv_b": 2e-10,
            "samples": {},
        }
        for c in (1.0, 2.0, 3.0)
    ]
    monkeypatch.setattr(in_situ, "_in_situ_once", once)
    got = profiler.measure_in_situ(None, "cpu", {}, {}, runs=2, previous=earlier)  # type: ignore[arg-type]
    assert len(got["samples"]["runs"]) == 5  # the earlier three and two more
    assert got["compute_s"] == 3.0 and got["compute_samples_s"] == [
        3.0
    ]  # median of 1, 2, 3, 10, 10
    assert got["msg_worker_a"] == pytest.approx(1e-4)


def test_fit_parts_splits_the_cold_call_from_the_warm_partitions() -> None:
    import psreal.profiler as profiler

    a, p, b, k = 90e-6, 6e-6, 1.5e-9, profiler.PARTS_K
    sizes = [10, 1000, 10_000, 50_000]
    one = [a + p + b * n for n in sizes]
    many = [a + k * (p + b * n) for n in sizes]
    got = profiler._fit_parts(sizes, one, many, k)
    assert (got.a, got.p, got.b) == (pytest.approx(a), pytest.approx(p), pytest.approx(b))


def test_op_cost_pays_the_call_once_and_each_partition_its_own() -> None:
    from pssim.costs import op_cost
    from pssim.profile import LinearCost

    f = LinearCost(a=100e-6, p=10e-6, b=1e-9)
    parts = [1000, 2000, 3000]
    assert op_cost(f, True, parts) == pytest.approx(100e-6 + 3 * 10e-6 + 6000e-9)
    assert op_cost(f, False, parts) == pytest.approx(100e-6 + 10e-6 + 6000e-9)  # one piece
    assert op_cost(f, True, []) == 0.0


def test_a_version_3_profile_keeps_its_costs() -> None:
    """Version 3 timed the partitioned ops one partition per call (its a was per partition)."""
    from pssim.costs import op_cost
    from pssim.profile import PROFILE_VERSION, Profile

    old = {
        "version": 3,
        "key": {},
        "host": "h",
        "device_name": "cpu",
        "cores": 2,
        "step_compute_s": 0.01,
        "ops": {"worker_unpack": {"a": 1e-4, "b": 1e-9}, "server_update": {"a": 3e-4, "b": 2e-9}},
    }
    prof = Profile.model_validate(old)
    parts = [1000, 2000]
    assert op_cost(prof.ops["worker_unpack"], True, parts) == pytest.approx(
        2 * 1e-4 + 3000e-9
    )  # as version 3 had it
    assert op_cost(prof.ops["worker_unpack"], False, parts) == pytest.approx(1e-4 + 3000e-9)
    assert op_cost(prof.ops["server_update"], False, parts) == pytest.approx(3e-4 + 6000e-9)
    assert (
        Profile.model_validate({**old, "version": PROFILE_VERSION}).ops["worker_unpack"].p == 0.0
    )  # current: taken as is


def test_compute_spread_is_over_the_calibration_runs() -> None:
    from pssim.profile import Profile, compute_spread

    base = {"key": {}, "host": "h", "device_name": "cpu", "cores": 2, "step_compute_s": 0.003}
    runs = [{"compute_s": 0.0025}, {"compute_s": 0.003}, {"compute_s": 0.0041}, {"other": 1}]
    got = compute_spread(Profile.model_validate({**base, "samples": {"in_situ": {"runs": runs}}}))
    assert got == {
        "compute_s": 0.003,
        "runs": 3,
        "min_s": 0.0025,
        "max_s": 0.0041,
        "rel_spread": pytest.approx((0.0041 - 0.0025) / 0.003),
    }
    assert compute_spread(Profile.model_validate(base)) == {
        "compute_s": 0.003,
        "runs": 0,
    }  # microbenchmark only


def test_a_profile_with_the_dropped_busy_factor_still_loads() -> None:
    """compute_busy_factor was written by psreal profile for a while; it is ignored now."""
    from pssim.profile import Profile

    old = {
        "version": 5,
        "key": {},
        "host": "h",
        "device_name": "cpu",
        "cores": 2,
        "step_compute_s": 0.01,
        "compute_busy_factor": 0.8,
    }
    prof = Profile.model_validate(old)
    assert prof.step_compute_s == 0.01 and "compute_busy_factor" not in prof.model_dump()


def test_packing_time_is_read_from_the_calibration_trace(tmp_path: Any) -> None:
    # a worker's trace: computation ends at 1.0 s and 2.0 s (steps 1 and 2; step 0 is warm-up),
    # its first push is sent 0.8 ms and 0.6 ms later (a pull request in between does not count)
    import json

    import psreal.profiler as profiler
    from pssim import wire

    events = [
        [0.5, "cpu_compute_end", 0, 0, 0.0, 0.0],
        [0.5001, "send", 0, 1, 1, wire.PUSH, 100],
        [1.0, "cpu_compute_end", 0, 1, 0.0, 0.0],
        [1.0008, "send", 0, 2, 1, wire.PUSH, 100],
        [1.5, "send", 0, 3, 1, wire.PULL, 64],
        [2.0, "cpu_compute_end", 0, 2, 0.0, 0.0],
        [2.0006, "send", 0, 4, 1, wire.PUSH, 100],
    ]
    (tmp_path / "rank2.json").write_text(json.dumps(events))
    (tmp_path / "rank1.json").write_text(json.dumps([[1.2, "send", 1, 1, 0, wire.REPLY, 100]]))
    assert profiler.pack_times(tmp_path, warmup=1) == pytest.approx([8e-4, 6e-4])


def test_packing_measured_in_situ_moves_the_microbenchmarks_cost() -> None:
    # the microbenchmark's packing costs 0.1 ms + 1 ns per element; the calibration's push of
    # 400,000 elements took 1.3 ms in situ: the extra 0.8 ms is charged per element (2 ns more);
    # had it taken 0.45 ms, the fixed part would drop by what the bench over-charges (0.05 ms)
    import psreal.profiler as profiler
    from pssim.costs import op_cost
    from pssim.profile import LinearCost

    bench = LinearCost(a=1e-4, b=1e-9)
    slow = profiler.fit_in_situ(bench, 1.3e-3, [300_000, 100_000], per_partition=False)
    assert (slow.a, slow.b) == (pytest.approx(1e-4), pytest.approx(3e-9))
    assert op_cost(slow, False, [300_000, 100_000]) == pytest.approx(1.3e-3)
    fast = profiler.fit_in_situ(bench, 0.45e-3, [300_000, 100_000], per_partition=False)
    assert (fast.a, fast.b) == (pytest.approx(0.5e-4), pytest.approx(1e-9))


def test_server_calls_are_timed_from_the_calibration_trace(tmp_path: Path) -> None:
    # the shard's spans in trace.json (microseconds): after the warm-up, the median decode + add,
    # optimiser step and reply encoding; workers' spans and a reused encoding (0 s) do not count
    import json

    import psreal.profiler as profiler

    def span(name: str, pid: int, ts: float, dur: float) -> dict:
        return {"name": name, "ph": "X", "pid": pid, "tid": 0, "ts": ts, "dur": dur}

    ev = [span("compute", 1, 0, 9000)]
    for k, (agg, upd) in enumerate([(900, 5000), (100, 1000), (120, 1100), (140, 1300)]):
        t = 10_000 * k
        ev += [
            span("aggregate", 2, t, agg),
            span("update", 2, t + 1000, upd),
            span("reply", 2, t + 3000, 200 + k),
            span("reply", 2, t + 3500, 0),
        ]
    (tmp_path / "trace.json").write_text(json.dumps({"traceEvents": ev}))
    got = profiler.server_span_times(tmp_path / "trace.json", warmup=1)
    assert got == pytest.approx(
        {"server_accumulate_s": 120e-6, "server_update_s": 1100e-6, "server_reply_s": 202e-6}
    )
    assert profiler.server_span_times(tmp_path / "missing.json", warmup=1) == {}


def test_ops_measured_in_situ_move_the_microbenchmarks() -> None:
    # microbenchmarks: accumulate 0.1 ms + 1 ns/element, update 0.2 ms + 2 ns, apply 0.3 ms + 3 ns;
    # the calibration's shard of 100,000 elements took 0.3 ms to accumulate (0.1 ms more) and
    # 0.5 ms to update (0.1 ms more): those ops take the excess per element, and apply, not timed
    # under BSP, takes both excesses (0.6 ms + 0.2 ms = 0.8 ms on that shard)
    import psreal.profiler as profiler
    from pssim.costs import op_cost
    from pssim.profile import LinearCost

    ops = {
        "server_accumulate": LinearCost(a=1e-4, b=1e-9),
        "server_update": LinearCost(a=2e-4, b=2e-9),
        "server_apply": LinearCost(a=3e-4, b=3e-9),
        "server_reply": LinearCost(a=5e-5, b=1e-9),
        "worker_pack": LinearCost(a=1e-4, b=1e-9),
    }
    # the worker's packing, timed in the same run (0.4 ms), moves by the same rule
    situ = {"server_accumulate_s": 3e-4, "server_update_s": 5e-4, "pack_s": 4e-4}
    got = profiler.ops_in_situ(ops, situ, [100_000], frozenset())
    assert op_cost(got["worker_pack"], False, [100_000]) == pytest.approx(4e-4)
    assert got["worker_pack_bench"] == ops["worker_pack"]
    assert op_cost(got["server_accumulate"], False, [100_000]) == pytest.approx(3e-4)
    assert op_cost(got["server_update"], False, [100_000]) == pytest.approx(5e-4)
    assert op_cost(got["server_apply"], False, [100_000]) == pytest.approx(8e-4)
    assert (
        got["server_apply_bench"] == ops["server_apply"] and "server_reply" not in got
    )  # no reply timed
    assert got["server_update"].b == pytest.approx(3e-9)  # the excess is per element


def test_arbiter_pass_costs_by_sleep_are_medians_filled_in_and_non_decreasing() -> None:
    # passes after sleeps under 50 us cost 0.05-0.07 ms, after 1-2 ms 0.2 ms, after 2-5 ms
    # 0.15 ms (fewer of them: pooled with the bin before, 0.18 ms), after 5-10 ms 0.4 ms; the
    # bins in between (50 us - 1 ms) have too few passes and take the line from 0.06 to 0.2;
    # sleeps over 10 ms take the last filled bin's 0.4 ms
    import psreal.profiler as profiler

    passes = (
        [[10e-6, 0.05e-3], [20e-6, 0.06e-3], [30e-6, 0.07e-3], [40e-6, 0.06e-3], [1e-6, 0.06e-3]]
        + [[1.5e-3, 0.2e-3]] * 10
        + [[3e-3, 0.15e-3]] * 5
        + [[6e-3, 0.4e-3]] * 5
        + [[0.3e-3, 9e-3]] * 2
    )
    got = profiler.arbiter_pass_costs(passes, least=5)
    assert [g for g, _ in got] == list(profiler.ARBITER_SLEEP_BINS_S)
    cpu = [c for _, c in got]
    assert cpu[0] == pytest.approx(0.06e-3)
    assert cpu[4] == pytest.approx(cpu[5]) == pytest.approx((0.2e-3 * 10 + 0.15e-3 * 5) / 15)
    assert (
        cpu[1] < cpu[2] < cpu[3] < cpu[4]
    )  # interpolated between the filled bins, whatever the two odd passes say
    assert cpu[6] == cpu[7] == pytest.approx(0.4e-3)
    assert profiler.arbiter_pass_costs(passes[:4], least=5) == []
