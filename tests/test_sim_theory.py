"""The simulator against closed forms from the literature and from first principles.

Every test builds its scenario in Python with fixed compute times (`compute.step_time_s`, or the
catalog roofline with `compute.profile: none`), so nothing depends on the machine running the tests,
and cites the formula it checks:

- the parameter-server NIC bound: a phase in which W workers each exchange M/S bytes with each of
  S shards takes max(M/B_w, W*M/(S*B_s)) (each worker NIC carries M, each shard NIC carries W*M/S;
  max-min sharing makes the tighter of the two the bottleneck for every message);
- BSP step = pull + compute + push + server work, composed exactly from the same CostModel;
- SSP(0) paces like BSP (DESIGN.md section 4); ASP >= SSP >= BSP in throughput with a straggler;
- BSP under exponential jitter: E[step] = base + E[max of W exponentials] = base + H_W * mean
  (order statistics: the maximum of W iid Exp(mean mu) has mean mu * H_W and variance
  mu^2 * sum_{k<=W} 1/k^2, from Renyi's representation of exponential spacings; David &
  Nagaraja, "Order Statistics", 3rd ed., 2003);
- pipeline bubble (p-1)/(m+p-1) for p equal stages and m microbatches (Huang et al., "GPipe",
  NeurIPS 2019; the same for 1F1B / PipeDream-Flush, Narayanan et al., ICML 2021);
- the same seed gives byte-identical result files.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pssim import wire
from pssim.costs import CostModel, build_costs
from pssim.draws import compute_factors
from pssim.pipeline import dry_run, schedule
from pssim.profile import LinearCost
from pssim.records import Records, summarize
from pssim.run import run_sim
from pssim.scenario import Scenario, scenario_from_dict
from pssim.sim import simulate
from pssim.workload import build_workload

GBPS = 125e6  # bytes/s per Gbit/s (DESIGN.md section 3: decimal units)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def equal_layers_scenario(
    W: int, S: int, h: int, bw_w: float, bw_s: float, lat_us: float = 100.0, **over: Any
) -> Scenario:
    """An mlp of S equal h x h layers on S shards, so that each shard holds exactly one layer.

    `range` placement cuts the partition sequence into S runs of equal bytes; every layer is
    h*h + h elements, so shard s gets layer s and all messages of one kind have the same size.
    """
    base = {
        "name": "theory",
        "model": {"kind": "mlp", "input_dim": h, "hidden": [h] * (S - 1), "output_dim": h},
        "training": {"batch_size": 16, "steps": 12, "warmup_steps": 2},
        "cluster": {
            "workers": {"count": W, "nic": {"bandwidth_gbps": bw_w, "latency_us": lat_us}},
            "servers": {"count": S, "nic": {"bandwidth_gbps": bw_s, "latency_us": lat_us}},
        },
        "compute": {"step_time_s": 0.01, "profile": "none"},
        "sync": {"mode": "bsp"},
        "sharding": {"policy": "range", "partition_bytes": 4 * h * h},
    }
    return scenario_from_dict(_merge(base, over))


def zero_host_costs(costs: CostModel) -> CostModel:
    """The same cost model with every host-side op free (isolates sync and network behaviour)."""
    return dataclasses.replace(costs, ops={k: LinearCost() for k in costs.ops})


def run(scn: Scenario, costs: CostModel | None = None) -> tuple[Records, dict[str, Any]]:
    rec, extra = simulate(scn, costs)
    return rec, summarize(scn, rec, extra)


def step_durations(rec: Records) -> np.ndarray:
    return rec.times["push_end_s"] - rec.times["pull_start_s"]


# ------------------------------------------------------------------------------- BSP closed forms
def phase_s(W: int, S: int, msg_bytes: float, bw_w: float, bw_s: float) -> float:
    """PS NIC bound: W*S messages of msg_bytes, worker NICs carry S each, shard NICs W each."""
    return max(S * msg_bytes / (bw_w * GBPS), W * msg_bytes / (bw_s * GBPS))


def bsp_expected(scn: Scenario, costs: CostModel) -> tuple[float, float]:
    """(first step, every later step) of a symmetric BSP run, composed from the CostModel.

    A step: pull requests (64 B each) + latency; the server is ready once the previous clock's W
    gradients are accumulated and the update applied (W*accumulate + update after the last push
    arrived), and the reply is packed once per version; replies + latency; unpack all shards;
    compute; pack; pushes + latency.
    """
    W, S = scn.cluster.workers.count, scn.cluster.servers.count
    bw_w, bw_s = scn.cluster.workers.nic.bandwidth_gbps, scn.cluster.servers.nic.bandwidth_gbps
    lat = (
        max(scn.cluster.workers.nic.latency_us, scn.cluster.servers.nic.latency_us) * 1e-6
        + costs.msg_overhead_s
    )
    layer = [
        build_workload(scn.model).units[0].params[0].numel,
        build_workload(scn.model).units[0].params[1].numel,
    ]
    wb = 4
    msg = wire.message_bytes(sum(layer) * wb)
    req = phase_s(W, S, wire.HEADER_BYTES, bw_w, bw_s) + lat
    xfer = phase_s(W, S, msg, bw_w, bw_s)
    reply = costs.op("server_reply", layer)
    unpack = S * costs.op("worker_unpack", layer)
    pack = S * costs.op("worker_pack", layer)
    server = W * costs.op("server_accumulate", layer) + costs.op("server_update", layer)
    tail = reply + xfer + lat + unpack + costs.compute_s + pack + xfer + lat
    return req + tail, max(req, server) + tail


@pytest.mark.parametrize(
    ("W", "S", "bw_w", "bw_s", "bound"),
    [
        (4, 2, 1.0, 10.0, "worker"),  # S*B_s = 20 > W*B_w = 4: each worker NIC is the bottleneck
        (8, 2, 10.0, 1.0, "server"),  # W*B_w = 80 > S*B_s = 2: each shard NIC is the bottleneck
        (3, 1, 1.0, 5.0, "worker"),
        (6, 3, 5.0, 2.0, "server"),
    ],
)
def test_bsp_step_is_the_exact_composition_of_costs(
    W: int, S: int, bw_w: float, bw_s: float, bound: str
) -> None:
    scn = equal_layers_scenario(W, S, h=64, bw_w=bw_w, bw_s=bw_s)
    assert (S * bw_s > W * bw_w) == (bound == "worker")
    costs = build_costs(scn)
    first, later = bsp_expected(scn, costs)
    rec, summary = run(scn, costs)
    d = step_durations(rec)
    assert d[:, 0] == pytest.approx(np.full(W, first), rel=1e-9)
    assert d[:, 1:] == pytest.approx(np.full((W, d.shape[1] - 1), later), rel=1e-9)
    # throughput over the measured window: W workers x batch every `later` seconds
    assert summary["throughput_samples_per_s"] == pytest.approx(
        W * scn.training.batch_size / later, rel=1e-9
    )
    assert summary["staleness"]["max"] == 0


@pytest.mark.parametrize(
    ("W", "S", "bw_w", "bw_s"),
    [(4, 2, 0.01, 0.1), (8, 2, 0.1, 0.01), (16, 4, 0.1, 0.02), (2, 1, 0.01, 0.01)],
)
def test_bsp_step_follows_the_ps_nic_bound_when_host_costs_are_negligible(
    W: int, S: int, bw_w: float, bw_s: float
) -> None:
    # Closed form alone: step = pull + compute + push, each transfer max(M/B_w, W*M/(S*B_s)) plus
    # its latency (the pull also pays the request's latency). Slow links make the host-side ops
    # (ns per element) and the 64-byte headers negligible next to transfers (us per element).
    h = 128
    scn = equal_layers_scenario(W, S, h=h, bw_w=bw_w, bw_s=bw_s, lat_us=10.0)
    M = S * (h * h + h) * 4  # model bytes
    B_w, B_s = bw_w * GBPS, bw_s * GBPS
    transfer = max(M / B_w, W * M / (S * B_s))
    lat = 10e-6
    closed = (transfer + 2 * lat) + scn.compute.step_time_s + (transfer + lat)
    rec, summary = run(scn)
    assert summary["step_time_s"]["mean"] == pytest.approx(closed, rel=1e-2)
    assert summary["throughput_samples_per_s"] == pytest.approx(
        W * scn.training.batch_size / closed, rel=1e-2
    )


# ------------------------------------------------------------------------------------- SSP / ASP
@pytest.mark.parametrize(
    "stragglers", [{}, {"slowdown": {1: 2.0}, "jitter": {"distribution": "exponential", "cv": 0.3}}]
)
def test_ssp_with_staleness_zero_paces_like_bsp(stragglers: dict[str, Any]) -> None:
    # DESIGN.md section 4: "s = 0 gives BSP's pace". A pull for step c waits for every worker's
    # gradient of step c-1 under both rules. The server's work differs by design (BSP: W
    # accumulations + one update; SSP: W applications), so host costs are set to zero here.
    over = {"stragglers": stragglers, "training": {"steps": 30, "warmup_steps": 3}, "seed": 7}
    bsp = equal_layers_scenario(4, 2, h=64, bw_w=1.0, bw_s=2.0, **over)
    ssp = equal_layers_scenario(
        4, 2, h=64, bw_w=1.0, bw_s=2.0, sync={"mode": "ssp", "staleness": 0}, **over
    )
    costs = zero_host_costs(build_costs(bsp))
    rec_b, sum_b = run(bsp, costs)
    rec_s, sum_s = run(ssp, costs)
    assert sum_s["throughput_samples_per_s"] == pytest.approx(
        sum_b["throughput_samples_per_s"], rel=1e-9
    )
    for f in ("pull_start_s", "pull_end_s", "compute_end_s", "push_end_s"):
        assert rec_s.times[f] == pytest.approx(rec_b.times[f], rel=1e-9)


def test_throughput_with_a_straggler_orders_asp_ssp_bsp() -> None:
    # With one worker twice as slow, BSP runs at the straggler's pace, SSP(2) lets the others run
    # up to 2 clocks ahead (absorbing bursts but not the mean rate), ASP never waits.
    over = {"stragglers": {"slowdown": {1: 2.0}}, "training": {"steps": 40, "warmup_steps": 4}}
    thr = {}
    for mode, extra in (("bsp", {}), ("ssp", {"staleness": 2}), ("asp", {})):
        scn = equal_layers_scenario(
            4, 2, h=64, bw_w=1.0, bw_s=2.0, sync={"mode": mode, **extra}, **over
        )
        thr[mode] = run(scn)[1]["throughput_samples_per_s"]
    assert thr["asp"] >= thr["ssp"] >= thr["bsp"]
    assert thr["asp"] > 1.2 * thr["bsp"]  # not a tie: the three fast workers gain a lot


def test_ssp_with_a_straggler_waits_only_when_the_bound_binds() -> None:
    # SSP(s): the fast workers get at most s clocks ahead of the straggler, so a worker's step c
    # never starts before the straggler finished step c - s - 1 (DESIGN.md section 4).
    s = 1
    scn = equal_layers_scenario(
        3,
        1,
        h=32,
        bw_w=1.0,
        bw_s=2.0,
        sync={"mode": "ssp", "staleness": s},
        stragglers={"slowdown": {0: 3.0}},
        training={"steps": 20, "warmup_steps": 2},
    )
    rec, _ = run(scn)
    t = rec.times
    for w in (1, 2):
        for c in range(s + 1, scn.training.steps):
            # the pull reply of step c leaves the shard only once the straggler's gradient of
            # step c-s-1 has arrived there
            assert t["pull_end_s"][w, c] >= rec.grad_arrive_s[0, c - s - 1, 0]


# ------------------------------------------------------------------------------ device sharing
@pytest.mark.parametrize("per_device", [1, 2, 4])
def test_workers_sharing_a_device_split_it_evenly(per_device: int) -> None:
    # Processor sharing (DESIGN.md section 4, "Devices"): k BSP workers that start computing
    # together on one device each get 1/k of it, so every compute phase takes k times the
    # standalone roofline time. Free host ops and fast links keep the phases aligned.
    W = 4
    scn = equal_layers_scenario(
        W,
        1,
        h=64,
        bw_w=1e5,
        bw_s=1e5,
        lat_us=0.0,
        compute={"step_time_s": None, "profile": "none"},
        cluster={"workers": {"per_device": per_device}},
    )
    costs = zero_host_costs(build_costs(scn))
    rec, summary = run(scn, costs)
    compute = rec.times["compute_end_s"] - rec.times["compute_start_s"]
    assert compute == pytest.approx(np.full(compute.shape, per_device * costs.compute_s), rel=1e-9)
    # utilisation counts a device busy once however many of its workers compute on it
    assert summary["utilization"]["device_max"] <= 1.0


# ------------------------------------------------------------------------------ jitter: E[max]
def test_bsp_jitter_cycle_is_base_plus_the_max_draw_exactly() -> None:
    # Each BSP clock ends when the slowest worker's gradient arrives: with free host ops, no
    # latency and very fast links, clock c lasts base + step_time_s * max_w J[w, c] (J from
    # pssim.draws), up to the nanoseconds the messages still take.
    W, cv = 4, 0.5
    over = {"training": {"steps": 60, "warmup_steps": 1}, "seed": 11}
    plain = equal_layers_scenario(W, 1, h=16, bw_w=1e5, bw_s=1e5, lat_us=0.0, **over)
    jit = equal_layers_scenario(
        W,
        1,
        h=16,
        bw_w=1e5,
        bw_s=1e5,
        lat_us=0.0,
        stragglers={"jitter": {"distribution": "exponential", "cv": cv}},
        **over,
    )
    costs = zero_host_costs(build_costs(plain))
    base = step_durations(run(plain, costs)[0])[0, 1]
    rec, _ = run(jit, costs)
    J = compute_factors(jit)[:, 0, :] - 1.0
    # worker w's step c+1 starts when it has pushed step c and ends at the next clock: the cycle
    # between two consecutive "all pushes of clock c arrived" instants
    arrive = np.nanmax(rec.grad_arrive_s[:, :, 0], axis=0)
    cycles = np.diff(arrive)
    want = base + jit.compute.step_time_s * J.max(axis=0)[1:]
    assert cycles == pytest.approx(want, rel=1e-7)


def test_bsp_mean_step_under_exponential_jitter_is_base_plus_harmonic_times_mean() -> None:
    # E[max of W iid Exp(mu)] = mu * H_W, Var = mu^2 * sum_{k=1..W} 1/k^2 (Renyi representation;
    # David & Nagaraja, Order Statistics, 2003). Jitter J has mean cv, so mu = cv * step_time_s.
    W, cv, steps, warm = 4, 0.5, 2000, 10
    over = {"training": {"steps": steps, "warmup_steps": warm}, "seed": 3}
    plain = equal_layers_scenario(W, 1, h=16, bw_w=1000.0, bw_s=1000.0, lat_us=1.0, **over)
    jit = equal_layers_scenario(
        W,
        1,
        h=16,
        bw_w=1000.0,
        bw_s=1000.0,
        lat_us=1.0,
        stragglers={"jitter": {"distribution": "exponential", "cv": cv}},
        **over,
    )
    costs = zero_host_costs(build_costs(plain))
    base = run(plain, costs)[1]["step_time_s"]["mean"]
    mean = run(jit, costs)[1]["step_time_s"]["mean"]
    mu = cv * jit.compute.step_time_s
    H = sum(1.0 / k for k in range(1, W + 1))
    se = mu * np.sqrt(sum(1.0 / k**2 for k in range(1, W + 1))) / np.sqrt(steps - warm)
    expected = base + H * mu
    assert abs(mean - expected) < 4 * se, (mean, expected, se)


# ------------------------------------------------------------------------------------ pipeline
def pipeline_scenario(p: int, m: int, kind: str, h: int = 256, mb: int = 64) -> Scenario:
    """p equal h x h layers, one per stage; roofline compute-bound so stage times are equal."""
    fast = {"bandwidth_gbps": 1e6, "latency_us": 0.0}
    return scenario_from_dict(
        {
            "name": "pipe",
            "model": {"kind": "mlp", "input_dim": h, "hidden": [h] * (p - 1), "output_dim": h},
            "training": {"batch_size": m * mb, "steps": 4, "warmup_steps": 1},
            "cluster": {"workers": {"count": 1, "nic": fast}, "servers": {"count": 1, "nic": fast}},
            "compute": {"profile": "none"},
            "sync": {"mode": "bsp"},
            "pipeline": {"stages": p, "microbatches": m, "schedule": kind},
        }
    )


@pytest.mark.parametrize(("p", "m"), [(2, 1), (2, 4), (3, 4), (4, 8), (4, 3), (5, 16)])
@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
def test_dry_run_bubble_is_gpipe_formula(p: int, m: int, kind: str) -> None:
    # Huang et al. 2019 (GPipe): bubble = (p-1)/(m+p-1) for equal stages; makespan
    # (m+p-1)(f+b). 1F1B reorders the actions but keeps the makespan for equal stages.
    f, b = 1.0, 2.0
    makespan, bubble = dry_run(schedule(kind, p, m), [f] * p, [b] * p)
    assert bubble == pytest.approx((p - 1) / (m + p - 1), rel=1e-12)
    assert makespan == pytest.approx((m + p - 1) * (f + b), rel=1e-12)


@pytest.mark.parametrize(("p", "m"), [(2, 4), (3, 6), (4, 8)])
def test_simulated_bubble_is_gpipe_formula_and_schedules_agree(p: int, m: int) -> None:
    results = {}
    for kind in ("gpipe", "1f1b"):
        scn = pipeline_scenario(p, m, kind)
        costs = build_costs(scn)
        assert len(set(costs.stage_fwd_s)) == 1 and len(set(costs.stage_bwd_s)) == 1  # equal stages
        rec, summary = run(scn, costs)
        t = rec.times
        phase = np.nanmax(t["compute_end_s"], axis=0) - np.nanmin(t["compute_start_s"], axis=0)
        results[kind] = phase[1:]
        assert summary["bubble_fraction"] == pytest.approx((p - 1) / (m + p - 1), rel=1e-4)
        want = (m + p - 1) * (costs.stage_fwd_s[0] + costs.stage_bwd_s[0])
        assert phase[1:] == pytest.approx(np.full(phase.size - 1, want), rel=1e-4)
    assert results["gpipe"] == pytest.approx(results["1f1b"], rel=1e-6)


# --------------------------------------------------------------------------------- determinism
def _files(folder: Path) -> dict[str, bytes]:
    out = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    summary = json.loads(out.pop("summary.json"))
    summary.pop("wall_time_s")
    out["summary.json"] = json.dumps(summary, sort_keys=True).encode()
    return out


def _jittery(seed: int) -> Scenario:
    return equal_layers_scenario(
        4,
        2,
        h=32,
        bw_w=1.0,
        bw_s=1.0,
        seed=seed,
        sync={"mode": "ssp", "staleness": 1},
        stragglers={"slowdown": {2: 1.5}, "jitter": {"distribution": "lognormal", "cv": 0.4}},
    )


def test_same_seed_gives_byte_identical_result_files(tmp_path: Path) -> None:
    a = _files(run_sim(_jittery(5), tmp_path / "a")[0])
    b = _files(run_sim(_jittery(5), tmp_path / "b")[0])
    assert set(a) == {"scenario.yaml", "steps.csv", "summary.json", "trace.json"}
    assert a == b


def test_different_seeds_with_jitter_give_different_results(tmp_path: Path) -> None:
    a = _files(run_sim(_jittery(5), tmp_path / "a")[0])
    b = _files(run_sim(_jittery(6), tmp_path / "b")[0])
    assert a["steps.csv"] != b["steps.csv"]
    assert (
        json.loads(a["summary.json"])["step_time_s"] != json.loads(b["summary.json"])["step_time_s"]
    )
