"""Simulator features beyond the sync rules: faults (crash and restart, crash for good) and overlap.

Semantics (docs/scenarios.md, `faults` and `communication.overlap`):
- a worker that crashes at step k with `restart_after_s: x` starts its pull of step k x seconds
  after its step k-1 ended; without a restart it runs no step from k on and its shards take it
  out of the sync rule, so the others go on (BSP sums the remaining workers' gradients);
- with overlap a shard's gradient is pushed as soon as backward has passed the first layer
  holding its parameters, so pushes start before compute ends and the step cannot get slower.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pssim.records import summarize
from pssim.scenario import scenario_from_dict
from pssim.sim import simulate

BASE = {
    "name": "features",
    "model": {"kind": "mlp", "input_dim": 64, "hidden": [64, 64, 64], "output_dim": 10},
    "training": {"batch_size": 16, "steps": 12, "warmup_steps": 2},
    "cluster": {
        "workers": {"count": 3, "nic": {"bandwidth_gbps": 1.0, "latency_us": 50}},
        "servers": {"count": 2, "nic": {"bandwidth_gbps": 1.0, "latency_us": 50}},
    },
    "compute": {"step_time_s": 0.01, "profile": "none"},
    "sharding": {"policy": "range", "partition_bytes": 4096},
}


def scn(**over: object) -> object:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for path, value in over.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node[k] = dict(node.get(k, {}))
            node = node[k]
        node[keys[-1]] = value
    return scenario_from_dict(data)


@pytest.mark.parametrize("mode", ["bsp", "ssp", "asp"])
def test_crash_with_restart_delays_that_step_by_the_restart_time(mode: str) -> None:
    s = scn(sync={"mode": mode}, faults=[{"at_step": 5, "worker": 1, "restart_after_s": 0.25}])
    rec, _ = simulate(s)
    t = rec.times
    gap = t["pull_start_s"][1, 5] - t["push_end_s"][1, 4]
    assert gap == pytest.approx(0.25, rel=1e-9)
    assert not np.isnan(t["push_end_s"]).any()  # everyone ran every step


@pytest.mark.parametrize("mode", ["bsp", "ssp", "asp"])
def test_crash_for_good_removes_the_worker_and_the_others_finish(mode: str) -> None:
    s = scn(sync={"mode": mode}, faults=[{"at_step": 4, "worker": 2}])
    rec, extra = simulate(s)
    t = rec.times
    assert np.isnan(t["push_end_s"][2, 4:]).all() and not np.isnan(t["push_end_s"][2, :4]).any()
    assert not np.isnan(t["push_end_s"][:2]).any()
    applied = rec.grad_applied >= 0
    assert applied[2, :4].all() and not applied[2, 4:].any()
    assert applied[:2].all()  # every gradient the others pushed was applied
    if mode == "bsp":
        assert rec.staleness()[applied].max() == 0
        # after the crash a clock sums the two remaining workers: versions still advance by one per
        # step
        assert (rec.grad_read[0, :, 0] == np.arange(s.training.steps)).all()
    summary = summarize(s, rec, extra)
    assert math.isfinite(summary["throughput_samples_per_s"])


def test_bsp_without_the_crashed_worker_runs_at_the_two_worker_pace() -> None:
    # after the crash the run is the 2-worker run: same step times once the departure is absorbed
    crashed, _ = simulate(scn(faults=[{"at_step": 3, "worker": 2}]))
    two = scn(
        cluster={
            **BASE["cluster"],
            "workers": {"count": 2, "nic": {"bandwidth_gbps": 1.0, "latency_us": 50}},
        }
    )
    ref, _ = simulate(two)
    d_crashed = np.diff(crashed.times["pull_start_s"][0, 6:])
    d_ref = np.diff(ref.times["pull_start_s"][0, 6:])
    np.testing.assert_allclose(d_crashed, d_ref, rtol=1e-9)


def test_overlap_starts_pushes_during_backward_and_is_never_slower() -> None:
    # roofline compute (overlap needs a backward timeline); small partitions spread the layers over
    # shards
    common = {
        "compute": {"profile": "none"},
        "cluster": {
            **BASE["cluster"],
            "servers": {"count": 4, "nic": {"bandwidth_gbps": 1.0, "latency_us": 50}},
        },
    }
    plain = scn(**common)
    over = scn(**common, communication={"overlap": True})
    rp, ep = simulate(plain)
    ro, eo = simulate(over)
    t = ro.times
    assert (t["push_start_s"] < t["compute_end_s"]).all()  # the last layers' shard goes first
    assert (rp.times["push_start_s"] == rp.times["compute_end_s"]).all()
    sp, so = summarize(plain, rp, ep), summarize(over, ro, eo)
    assert so["step_time_s"]["mean"] <= sp["step_time_s"]["mean"] * (1 + 1e-9)
