"""Invariants of every simulated run, checked with Hypothesis over workers, shards, sync rules,
stragglers, jitter and device sharing.

- staleness: 0 under BSP; at most `pssim.sync.staleness_bound` = (W-1)(2s+1) under SSP(s) (a
  gradient of step c can see only the other workers' gradients of steps c-s .. c+s applied after
  its read; docs/metrics.md); unbounded under ASP (a straggler's gradients exceed the SSP bound);
- the SSP rule itself: a pull for step c is answered only once every worker's gradient of step
  c-s-1 has been applied on that shard; BSP reads version c at step c;
- every step's phases are ordered (pull, compute, push, next pull) and every gradient is applied,
  after it arrived, to a version no older than the one it read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pssim.records import Records, summarize
from pssim.scenario import Scenario, scenario_from_dict
from pssim.sim import simulate
from pssim.sync import staleness_bound


def scenario(
    W: int,
    S: int,
    mode: str,
    s: int | None = None,
    slowdown: dict[int, float] | None = None,
    jitter: tuple[str, float] = ("none", 0.0),
    per_device: int = 1,
    steps: int = 14,
    seed: int = 0,
    step_time_s: float | None = 0.004,
) -> Scenario:
    sync: dict[str, Any] = {"mode": mode}
    if mode == "ssp":
        sync["staleness"] = s
    return scenario_from_dict(
        {
            "name": "inv",
            "seed": seed,
            "model": {"kind": "mlp", "input_dim": 32, "hidden": [64, 64], "output_dim": 10},
            "training": {"batch_size": 16, "steps": steps, "warmup_steps": 1},
            "cluster": {
                "workers": {
                    "count": W,
                    "per_device": per_device,
                    "nic": {"bandwidth_gbps": 1.0, "latency_us": 50},
                },
                "servers": {"count": S, "nic": {"bandwidth_gbps": 2.0, "latency_us": 50}},
            },
            "compute": {"step_time_s": step_time_s, "profile": "none"},
            "sync": sync,
            "sharding": {"partition_bytes": 2000},
            "stragglers": {
                "slowdown": slowdown or {},
                "jitter": {"distribution": jitter[0], "cv": jitter[1]},
            },
        }
    )


@st.composite
def scenarios(draw: st.DrawFn, modes: tuple[str, ...] = ("bsp", "ssp", "asp")) -> Scenario:
    W = draw(st.integers(1, 5))
    S = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(modes))
    s = draw(st.integers(0, 3)) if mode == "ssp" else None
    slow = draw(
        st.dictionaries(st.integers(0, W - 1), st.sampled_from([1.0, 1.5, 2.0, 4.0]), max_size=2)
    )
    dist = draw(st.sampled_from(["none", "exponential", "lognormal"]))
    cv = 0.0 if dist == "none" else draw(st.sampled_from([0.1, 0.5, 1.0]))
    per_device = draw(st.integers(1, W))
    # roofline compute (None) makes workers that share a device contend for it
    step_time = draw(st.sampled_from([0.004, None]))
    seed = draw(st.integers(0, 2**16))
    return scenario(W, S, mode, s, slow, (dist, cv), per_device, seed=seed, step_time_s=step_time)


def check_ordering(rec: Records) -> None:
    t = rec.times
    seq = (
        "pull_start_s",
        "pull_end_s",
        "compute_start_s",
        "compute_end_s",
        "push_start_s",
        "push_end_s",
    )
    for a, b in zip(seq, seq[1:], strict=False):
        assert (t[a] <= t[b]).all(), (a, b)
    assert (t["push_end_s"][:, :-1] <= t["pull_start_s"][:, 1:]).all()
    assert (t["wait_s"] >= 0).all()
    assert (t["wait_s"] <= t["pull_end_s"] - t["pull_start_s"] + 1e-12).all()


def check_gradients(rec: Records) -> None:
    # every (worker, step, shard it holds parameters of) gradient was applied after it arrived
    have = rec.grad_bytes > 0
    assert (rec.grad_applied[have] >= 0).all()
    assert (rec.grad_applied[~have] == -1).all()
    assert (rec.grad_applied[have] >= rec.grad_read[have]).all()
    assert (rec.grad_done_s[have] >= rec.grad_arrive_s[have]).all()
    # versions a worker reads never go backwards
    r = np.where(have, rec.grad_read, 0)
    assert (np.diff(r, axis=1) >= 0).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_staleness_respects_the_sync_rule_bound(scn: Scenario) -> None:
    rec, extra = simulate(scn)
    check_ordering(rec)
    check_gradients(rec)
    W, mode = scn.cluster.workers.count, scn.sync.mode
    stale = rec.staleness()
    have = stale >= 0
    bound = staleness_bound(mode, scn.sync.staleness, W)
    if bound is not None:
        assert stale[have].max() <= bound
    if mode == "bsp":
        assert (stale[have] == 0).all()
        # BSP: every worker reads version c at step c on every shard
        steps = np.broadcast_to(np.arange(scn.training.steps)[None, :, None], rec.grad_read.shape)
        assert (rec.grad_read[have] == steps[have]).all()
    summary = summarize(scn, rec, extra)
    assert summary["staleness"]["max"] <= (bound if bound is not None else np.inf)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(modes=("ssp", "bsp")))
def test_a_pull_waits_for_every_gradient_of_step_c_minus_s_minus_1(scn: Scenario) -> None:
    # SSP(s): step c may start only when the slowest worker's clock is >= c - s (DESIGN.md sec. 4);
    # BSP is the same rule with s = 0.
    rec, _ = simulate(scn)
    s = scn.sync.staleness if scn.sync.mode == "ssp" else 0
    t = rec.times
    W, T = scn.cluster.workers.count, scn.training.steps
    for shard in range(scn.cluster.servers.count):
        done = rec.grad_done_s[:, :, shard]
        for c in range(s + 1, T):
            latest = np.nanmax(done[:, c - s - 1])
            for w in range(W):
                assert t["pull_end_s"][w, c] >= latest


def test_asp_staleness_exceeds_the_ssp_bound_with_a_straggler() -> None:
    # ASP has no bound: while a straggler 8x slower computes one step, the other two workers push
    # ~16 gradients, more than the SSP(1) bound (W-1)(2s+1) = 6.
    W = 3
    rec, _ = simulate(scenario(W, 1, "asp", slowdown={0: 8.0}, steps=20))
    assert rec.staleness().max() > staleness_bound("ssp", 1, W)
    check_ordering(rec)
    check_gradients(rec)
    # while SSP(1) on the same cluster stays within its bound
    rec, _ = simulate(scenario(W, 1, "ssp", 1, slowdown={0: 8.0}, steps=20))
    assert 0 < rec.staleness().max() <= staleness_bound("ssp", 1, W)


def test_ssp_staleness_bound_is_reached_under_adversarial_jitter() -> None:
    # the bound is not loose by construction: with heavy jitter SSP(0) sees staleness W-1
    # (all the other workers' gradients of the same clock applied between read and apply)
    W = 4
    rec, _ = simulate(scenario(W, 1, "ssp", 0, jitter=("exponential", 1.0), steps=40, seed=1))
    assert rec.staleness().max() == staleness_bound("ssp", 0, W)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 3),
    st.integers(2, 3),
    st.sampled_from([1, 2, 4]),
    st.integers(0, 2),
    st.sampled_from(["gpipe", "1f1b"]),
    st.integers(0, 2**16),
)
def test_pipeline_staleness_bound_counts_every_pusher_of_the_shard(
    W: int, stages: int, microbatches: int, s: int, kind: str, seed: int
) -> None:
    # With pipelines every stage process pushes its own gradient (one update each), so the SSP
    # bound of docs/metrics.md applies with W = the shard's pushers: replicas x stages whose
    # parameters live on it. pssim.sync.staleness_bound takes that count.
    scn = scenario_from_dict(
        {
            "name": "inv-pipe",
            "seed": seed,
            "model": {"kind": "mlp", "input_dim": 32, "hidden": [64, 64, 64], "output_dim": 10},
            "training": {"batch_size": 16, "steps": 12, "warmup_steps": 1},
            "cluster": {"workers": {"count": W}, "servers": {"count": 2}},
            "compute": {"profile": "none"},
            "sync": {"mode": "ssp", "staleness": s},
            "sharding": {"partition_bytes": 2000},
            "pipeline": {"stages": stages, "microbatches": microbatches, "schedule": kind},
            "stragglers": {"jitter": {"distribution": "exponential", "cv": 1.0}},
        }
    )
    rec, _ = simulate(scn)
    check_ordering(rec)
    check_gradients(rec)
    stale = rec.staleness()
    for shard in range(scn.cluster.servers.count):
        pushers = int((rec.grad_bytes[:, 0, shard] > 0).sum())
        got = stale[:, :, shard]
        assert got.max() <= staleness_bound("ssp", s, pushers)
