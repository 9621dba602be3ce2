"""The max-min fair fluid model (pssim.fluid.FluidSystem) that both backends use for links and devices.

Max-min fairness by progressive filling (Bertsekas & Gallager, "Data Networks", 2nd ed., sec. 6.5.2).
B&G characterise the allocation: a feasible allocation is max-min fair if and only if every
session has a *bottleneck link*, a saturated link on its path on which its rate is at least
every other session's rate. Here a flow's rate cap counts as a bottleneck of its own. The
Hypothesis tests check feasibility and that characterisation on random instances; the closed
cases check the numbers by hand; the drain tests check completion times and ordering.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pssim.fluid import FluidSystem

REL = 1e-9


def check_max_min(fs: FluidSystem, flows: dict[Hashable, tuple[tuple[int, ...], float]]) -> None:
    """Feasibility and B&G's bottleneck characterisation for the current rates."""
    rates = fs.rates()
    R = fs.cap.size
    load = np.zeros(R)
    on: list[list[Hashable]] = [[] for _ in range(R)]
    for key, (res, _cap) in flows.items():
        assert rates[key] > 0
        for r in res:
            load[r] += rates[key]
            on[r].append(key)
    # feasibility: no resource over capacity
    assert (load <= fs.cap * (1 + REL)).all()
    saturated = load >= fs.cap * (1 - 1e-9)
    for key, (res, cap) in flows.items():
        x = rates[key]
        assert x <= cap * (1 + REL)
        at_cap = x >= cap * (1 - 1e-9)
        bottleneck = any(
            saturated[r] and all(x >= rates[o] * (1 - 1e-9) for o in on[r]) for r in res
        )
        assert at_cap or bottleneck, (key, x, res)


# --------------------------------------------------------------------------------- closed cases
@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
def test_n_flows_on_one_link_get_a_fair_share(n: int) -> None:
    fs = FluidSystem([10.0])
    for i in range(n):
        fs.add(0.0, (0,), 1.0, i)
    fs.recompute()
    assert list(fs.rates().values()) == pytest.approx([10.0 / n] * n, rel=1e-12)


def test_three_link_example_has_three_bottleneck_levels() -> None:
    # Three links, five sessions (B&G sec. 6.5.2 style; numbers worked by hand):
    #   L0 (cap 1):   a, b, c        L1 (cap 1):   a, d        L2 (cap 1.5):   d, e
    # Filling: all rise to 1/3, where L0 saturates -> a, b, c = 1/3. d and e keep rising: L1 has
    # 2/3 left for d alone, L2 has 1.5 - 2/3 = 5/6 for d and e; d reaches 2/3 first (L1 saturates)
    # while e is at 2/3 too; e then takes the rest of L2: 1.5 - 2/3 = 5/6.
    fs = FluidSystem([1.0, 1.0, 1.5], ["L0", "L1", "L2"])
    flows = {
        "a": ((0, 1), np.inf),
        "b": ((0,), np.inf),
        "c": ((0,), np.inf),
        "d": ((1, 2), np.inf),
        "e": ((2,), np.inf),
    }
    for key, (res, _) in flows.items():
        fs.add(0.0, res, 1.0, key)
    fs.recompute()
    r = fs.rates()
    assert [r[k] for k in "abcde"] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 2 / 3, 5 / 6], rel=1e-12)
    check_max_min(fs, flows)


def test_parking_lot() -> None:
    # B&G's linear network: one session over L links, one single-link session per link; all
    # capacities 1 -> every session gets 1/2.
    fs = FluidSystem([1.0, 1.0, 1.0])
    fs.add(0.0, (0, 1, 2), 1.0, "long")
    for i in range(3):
        fs.add(0.0, (i,), 1.0, f"short{i}")
    fs.recompute()
    assert list(fs.rates().values()) == pytest.approx([0.5] * 4, rel=1e-12)
    # a second short session on the last link: the long one gets 1/3 there, and the short ones
    # on the other links take the 2/3 it leaves
    fs.add(0.0, (2,), 1.0, "short2b")
    fs.recompute()
    r = fs.rates()
    assert r["long"] == pytest.approx(1 / 3)
    assert r["short2"] == r["short2b"] == pytest.approx(1 / 3)
    assert r["short0"] == r["short1"] == pytest.approx(2 / 3)


def test_a_cap_freezes_a_flow_and_the_rest_share_what_it_leaves() -> None:
    fs = FluidSystem([1.0])
    fs.add(0.0, (0,), 1.0, "capped", cap=0.1)
    fs.add(0.0, (0,), 1.0, "x")
    fs.add(0.0, (0,), 1.0, "y")
    fs.recompute()
    assert fs.rates() == pytest.approx({"capped": 0.1, "x": 0.45, "y": 0.45})


def test_ps_worker_and_server_nic_bound() -> None:
    # W workers each send one message of b bytes to each of S shards: worker egress carries S
    # messages, shard ingress W. Every message gets min(B_w/S, B_s/W), so the phase takes
    # max(S*b/B_w, W*b/B_s) -- the PS NIC bound of DESIGN.md section 4.
    for W, S, Bw, Bs in [(8, 2, 1.0, 2.0), (2, 4, 1.0, 10.0), (16, 16, 3.0, 3.0)]:
        fs = FluidSystem([Bw] * W + [Bs] * S)
        for w in range(W):
            for s in range(S):
                fs.add(0.0, (w, W + s), 5.0, (w, s))
        fs.recompute()
        assert list(fs.rates().values()) == pytest.approx(
            [min(Bw / S, Bs / W)] * (W * S), rel=1e-12
        )
        assert fs.next_completion() == pytest.approx(max(S * 5.0 / Bw, W * 5.0 / Bs), rel=1e-12)


# ------------------------------------------------------------------------------ drain / timing
def drain(fs: FluidSystem) -> list[tuple[float, list[Hashable]]]:
    """Run every flow to completion; returns (time, keys completed then) in order."""
    out = []
    fs.recompute()
    while len(fs):
        t = fs.next_completion()
        assert np.isfinite(t)
        out.append((t, fs.pop_completed(t)))
        fs.recompute()
    return out


def test_drain_times_on_one_link() -> None:
    # two flows of 1 and 3 on a link of 1: both at 1/2 until the first ends at 2, then the second
    # runs alone with 2 left and ends at 4
    fs = FluidSystem([1.0])
    fs.add(0.0, (0,), 1.0, "small")
    fs.add(0.0, (0,), 3.0, "big")
    assert drain(fs) == [(pytest.approx(2.0), ["small"]), (pytest.approx(4.0), ["big"])]


def test_a_late_flow_slows_the_early_one_and_they_finish_together() -> None:
    # A (2 units) alone at rate 1 until B (1 unit) starts at t=1; then 1/2 each: both have 1 left,
    # both end at t=3. Flows done together are reported in start order.
    fs = FluidSystem([1.0])
    fs.add(0.0, (0,), 2.0, "A")
    fs.recompute()
    assert fs.next_completion() == pytest.approx(2.0)
    fs.add(1.0, (0,), 1.0, "B")
    fs.recompute()
    assert fs.next_completion() == pytest.approx(3.0)
    assert fs.pop_completed(3.0) == ["A", "B"]
    assert len(fs) == 0
    assert fs.carried == pytest.approx([3.0])


def test_freed_capacity_goes_to_the_flows_that_can_use_it() -> None:
    # 3-link example drained: when the L0 flows end, a grows into L1 and d gives back some of L2
    fs = FluidSystem([1.0, 1.0, 1.5])
    fs.add(0.0, (0, 1), 10.0, "a")
    fs.add(0.0, (0,), 1.0, "b")
    fs.add(0.0, (0,), 1.0, "c")
    fs.add(0.0, (1, 2), 10.0, "d")
    fs.add(0.0, (2,), 10.0, "e")
    fs.recompute()
    t = fs.next_completion()
    assert t == pytest.approx(3.0)  # b, c: 1 unit at 1/3
    assert fs.pop_completed(t) == ["b", "c"]
    fs.recompute()
    # now L0 holds a alone, L1 a and d, L2 d and e: a = d = 1/2 on L1, e = 1.5 - 1/2 = 1
    assert fs.rates() == pytest.approx({"a": 0.5, "d": 0.5, "e": 1.0})


def test_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        FluidSystem([])
    with pytest.raises(ValueError):
        FluidSystem([1.0, 0.0])
    with pytest.raises(ValueError):
        FluidSystem([1.0, np.inf])
    fs = FluidSystem([1.0, 1.0])
    with pytest.raises(ValueError):
        fs.add(0.0, (), 1.0, "none")
    with pytest.raises(ValueError):
        fs.add(0.0, (0, 1, 0, 1), 1.0, "four")
    with pytest.raises(ValueError):
        fs.add(0.0, (0,), -1.0, "negative")
    with pytest.raises(ValueError):
        fs.add(0.0, (0,), float("nan"), "nan")
    fs.add(1.0, (0,), 1.0, "ok")
    with pytest.raises(ValueError):
        fs.add(0.5, (0,), 1.0, "backwards")
    bad = FluidSystem([1.0])
    bad.add(0.0, (3,), 1.0, "out of range")
    with pytest.raises(ValueError):
        bad.recompute()


# ------------------------------------------------------------------------------------- Hypothesis
@st.composite
def instances(draw: st.DrawFn) -> tuple[list[float], dict[Hashable, tuple[tuple[int, ...], float]]]:
    R = draw(st.integers(1, 6))
    caps = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0, 100.0]), min_size=R, max_size=R))
    n = draw(st.integers(1, 25))
    flows: dict[Hashable, tuple[tuple[int, ...], float]] = {}
    for i in range(n):
        res = tuple(
            draw(st.lists(st.integers(0, R - 1), min_size=1, max_size=min(3, R), unique=True))
        )
        cap = draw(st.sampled_from([np.inf, np.inf, np.inf, 0.05, 0.3, 1.5]))
        flows[i] = (res, cap)
    return caps, flows


@settings(max_examples=300, deadline=None)
@given(instances())
def test_allocation_is_feasible_and_every_flow_has_a_bottleneck(inst: tuple) -> None:
    caps, flows = inst
    fs = FluidSystem(caps)
    for key, (res, cap) in flows.items():
        fs.add(0.0, res, 1.0, key, cap=cap)
    fs.recompute()
    check_max_min(fs, flows)


@settings(max_examples=150, deadline=None)
@given(
    instances(),
    st.lists(st.floats(0.1, 10.0), min_size=25, max_size=25),
    st.lists(st.floats(0.0, 3.0), min_size=25, max_size=25),
)
def test_draining_keeps_the_allocation_max_min_and_conserves_work(
    inst: tuple, amounts: list[float], starts: list[float]
) -> None:
    # flows start at random times; after every start and every completion the allocation is
    # max-min fair; every flow completes after its start + amount / (tightest capacity on its
    # path, or its cap); resources carry exactly the amounts of the flows that crossed them
    caps, flows = inst
    fs = FluidSystem(caps)
    order = sorted(flows, key=lambda k: (starts[k], k))
    started: dict[Hashable, float] = {}
    finished: dict[Hashable, float] = {}
    active: dict[Hashable, tuple[tuple[int, ...], float]] = {}
    i = 0
    while i < len(order) or len(fs):
        t_next = fs.next_completion() if len(fs) else np.inf
        if i < len(order) and starts[order[i]] <= t_next:
            t = starts[order[i]]
            while i < len(order) and starts[order[i]] == t:
                k = order[i]
                fs.add(t, flows[k][0], amounts[k], k, cap=flows[k][1])
                started[k], active[k] = t, flows[k]
                i += 1
        else:
            t = t_next
            for k in fs.pop_completed(t):
                finished[k] = t
                del active[k]
        fs.recompute()
        if active:
            check_max_min(fs, active)
    assert set(finished) == set(flows)
    for k, (res, cap) in flows.items():
        fastest = min(min(caps[r] for r in res), cap)
        assert finished[k] >= started[k] + amounts[k] / fastest * (1 - 1e-9) - 1e-9
    want = np.zeros(len(caps))
    for k, (res, _) in flows.items():
        for r in res:
            want[r] += amounts[k]
    assert fs.carried == pytest.approx(want, rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.01, 10.0), min_size=1, max_size=30), st.sampled_from([0.5, 1.0, 4.0]))
def test_one_link_is_work_conserving(amounts: list[float], cap: float) -> None:
    # a single link never idles while flows remain: the last completion is sum(amounts) / cap,
    # and flows complete in order of size (processor sharing)
    fs = FluidSystem([cap])
    for i, a in enumerate(amounts):
        fs.add(0.0, (0,), a, i)
    done = drain(fs)
    assert done[-1][0] == pytest.approx(sum(amounts) / cap, rel=1e-9)
    finish = {k: t for t, keys in done for k in keys}
    by_time = sorted(finish, key=lambda k: (finish[k], k))
    assert [amounts[k] for k in by_time] == pytest.approx(sorted(amounts), rel=1e-6)


# ---------------------------------------------------------------------- devices: processor sharing
def test_shared_device_is_processor_sharing_like_the_fluid_model() -> None:
    # pssim.sim.resources.SharedProcessor is the fluid model restricted to one resource: k jobs
    # each progress at 1/k. A (2 s of work) starts at 0, B (1 s) at 1: A runs alone until 1, then
    # both at 1/2 with 1 s left each -> both finish at 3; C (0.5 s) at 3.5 runs alone -> 4.0.
    import simpy

    from pssim.sim.resources import SharedProcessor

    env = simpy.Environment()
    dev = SharedProcessor(env, "gpu0")
    done: dict[str, float] = {}

    def job(name: str, start: float, work: float):  # noqa: ANN202 - SimPy process
        yield env.timeout(start)
        yield dev.run(work)
        done[name] = env.now

    for name, start, work in (("A", 0.0, 2.0), ("B", 1.0, 1.0), ("C", 3.5, 0.5)):
        env.process(job(name, start, work))
    env.run()
    assert done == pytest.approx({"A": 3.0, "B": 3.0, "C": 4.0}, rel=1e-12)
    fs = FluidSystem([1.0])  # the same schedule in the fluid model
    fs.add(0.0, (0,), 2.0, "A")
    fs.recompute()
    fs.add(1.0, (0,), 1.0, "B")
    assert drain(fs) == [(pytest.approx(3.0), ["A", "B"])]


def _run_jobs(dev, env, jobs):  # noqa: ANN001, ANN202 - (name, start, work, priority) -> finish times
    done: dict[str, float] = {}

    def job(name: str, start: float, work: float, prio: int):  # noqa: ANN202 - SimPy process
        yield env.timeout(start)
        yield dev.run(work, prio)
        done[name] = env.now

    for name, start, work, prio in jobs:
        env.process(job(name, start, work, prio))
    env.run()
    return done


def test_compute_jobs_take_turns_in_slices_on_a_core() -> None:
    # a kernel runs one thread per core at a time, for at most one slice q: with q = 0.5 s,
    # A (1 s) and B (1 s) arriving at 0 alternate A B A B: A ends at 1.5, B at 2.0 (evenly
    # shared, both would end at 2.0); a slice longer than the jobs is first come, first served
    import simpy

    from pssim.sim.resources import COMPUTE, SharedProcessor

    for q, expect in (
        (0.5, {"A": 1.5, "B": 2.0}),
        (5.0, {"A": 1.0, "B": 2.0}),
        (0.0, {"A": 2.0, "B": 2.0}),
    ):
        env = simpy.Environment()
        got = _run_jobs(
            SharedProcessor(env, "core0", q),
            env,
            [("A", 0.0, 1.0, COMPUTE), ("B", 0.0, 1.0, COMPUTE)],
        )
        assert got == pytest.approx(expect, rel=1e-12), q


def test_woken_work_preempts_compute_and_the_arbiter_preempts_both() -> None:
    # C (compute, 2 s) from 0; M (a message's CPU, 0.5 s) arrives at 0.5 and runs at once, C
    # paused: M ends at 1.0, C at 2.5. R (arbiter, 0.25 s) at 0.75 preempts M: M ends at 1.25,
    # C at 2.75. A second message N (0.5 s) at 0.5 shares with M evenly on a core without a slice;
    # on a core with one (as the profile gives every core) M runs through first, then N: the
    # kernel runs one thread at a time, and woken work shorter than a slice runs to its end
    # (benchmarks/wake_work.py). But not before the computation's protected slice has ended: with
    # a 1.5 s slice, M and N wait for C's first slice (M ends at 2.0, N at 2.5, C at 3.0); with
    # a 1 s slice and M and N at 1.2, C has run on past its slice alone and they run at once
    # (benchmarks/woken_compute.py).
    import simpy

    from pssim.sim.resources import ARBITER, COMPUTE, ORDINARY, SharedProcessor

    env = simpy.Environment()
    got = _run_jobs(
        SharedProcessor(env, "core0", 0.1),
        env,
        [("C", 0.0, 2.0, COMPUTE), ("M", 0.5, 0.5, ORDINARY)],
    )
    assert got == pytest.approx({"M": 1.0, "C": 2.5}, rel=1e-12)
    env = simpy.Environment()
    got = _run_jobs(
        SharedProcessor(env, "core0", 0.1),
        env,
        [("C", 0.0, 2.0, COMPUTE), ("M", 0.5, 0.5, ORDINARY), ("R", 0.75, 0.25, ARBITER)],
    )
    assert got == pytest.approx({"R": 1.0, "M": 1.25, "C": 2.75}, rel=1e-12)
    env = simpy.Environment()
    got = _run_jobs(
        SharedProcessor(env, "core0"),
        env,
        [("C", 0.0, 2.0, COMPUTE), ("M", 0.5, 0.5, ORDINARY), ("N", 0.5, 0.5, ORDINARY)],
    )
    assert got == pytest.approx({"M": 1.5, "N": 1.5, "C": 3.0}, rel=1e-12)
    env = simpy.Environment()
    got = _run_jobs(
        SharedProcessor(env, "core0", 1.5),
        env,
        [("C", 0.0, 2.0, COMPUTE), ("M", 0.5, 0.5, ORDINARY), ("N", 0.5, 0.5, ORDINARY)],
    )
    assert got == pytest.approx({"M": 2.0, "N": 2.5, "C": 3.0}, rel=1e-12)
    env = simpy.Environment()
    got = _run_jobs(
        SharedProcessor(env, "core0", 1.0),
        env,
        [("C", 0.0, 3.0, COMPUTE), ("M", 1.2, 0.5, ORDINARY), ("N", 1.2, 0.5, ORDINARY)],
    )
    assert got == pytest.approx({"M": 1.7, "N": 2.2, "C": 4.0}, rel=1e-12)


def test_turn_left_is_the_rest_of_the_running_compute_jobs_slice_or_work() -> None:
    # slice 1 s; C (compute, 2.5 s) from 0: at 0.3 its turn has 0.7 s left. At 1.0 its slice ends
    # with nothing else wanting the core: it runs on unprotected, and a thread woken there would
    # get the core at once (benchmarks/woken_compute.py), so nothing is left at 1.2, nor while
    # woken work (M, 0.2 s from 2.2) has the core, nor at 2.5 once C has it back. A job with less
    # work than slice left holds the core for its work (D, 0.4 s: 0.1 s left at 0.3). Without a
    # slice compute shares the core evenly and never holds it either
    import simpy

    from pssim.sim.resources import COMPUTE, ORDINARY, SharedProcessor

    env = simpy.Environment()
    sp = SharedProcessor(env, "core0", 1.0)
    assert sp.turn_left() == 0.0  # idle
    seen: dict[float, float] = {}

    def probe():  # noqa: ANN202 - SimPy process
        for t in (0.3, 1.2, 2.2, 2.3, 2.5):
            yield env.timeout(t - env.now)
            seen[t] = sp.turn_left()
            if t == 2.2:
                sp.run(0.2, ORDINARY)

    sp.run(2.5, COMPUTE)
    env.process(probe())
    env.run()
    assert seen == pytest.approx({0.3: 0.7, 1.2: 0.0, 2.2: 0.0, 2.3: 0.0, 2.5: 0.0}, abs=1e-12)
    env = simpy.Environment()
    short = SharedProcessor(env, "core0", 1.0)
    short.run(0.4, COMPUTE)
    env.run(until=0.3)
    assert short.turn_left() == pytest.approx(0.1, abs=1e-12)
    env = simpy.Environment()
    even = SharedProcessor(env, "core0")
    even.run(1.0, COMPUTE)
    assert even.turn_left() == 0.0


def test_a_woken_thread_waits_for_a_protected_slice_and_takes_the_core_from_one_run_past_it() -> (
    None
):
    # slice 1 s. A computes 2 s from 0; B is woken at d, unpacks (woken work, 0.1 s) and then
    # computes 2 s. The kernel protects the slice a thread gets with the core, and only that one
    # (benchmarks/woken_compute.py: B waits for A's slice when woken within it, and takes the core
    # at once when woken after A has run on past it alone, in every trial):
    # - d = 0.5: B's unpacking waits for A's slice (1.0-1.1); A has run on past its slice alone
    #   by then, so B's computation takes the core (1.1-2.1), A finishes (2.1-3.1), then B (4.1);
    # - d = 1.5: A is past its slice; B unpacks at once (1.5-1.6) and computes from 1.6 to 2.6,
    #   A finishes at 3.1, B at 4.1. (Were A's renewed slice protected, A would end at 2.1.)
    import simpy

    from pssim.sim.resources import COMPUTE, SharedProcessor

    def run(d: float) -> dict[str, float]:
        env = simpy.Environment()
        sp = SharedProcessor(env, "core0", 1.0)
        done: dict[str, float] = {}

        def a():  # noqa: ANN202 - SimPy process
            yield sp.run(2.0, COMPUTE)
            done["A"] = env.now

        def b():  # noqa: ANN202 - SimPy process
            yield env.timeout(d)
            yield sp.run(0.1)
            done["unpack"] = env.now
            yield sp.run(2.0, COMPUTE)
            done["B"] = env.now

        env.process(a())
        env.process(b())
        env.run()
        return done

    assert run(0.5) == pytest.approx({"unpack": 1.1, "A": 3.1, "B": 4.1}, rel=1e-9)
    assert run(1.5) == pytest.approx({"unpack": 1.6, "A": 3.1, "B": 4.1}, rel=1e-9)


def _threads_on_core0(slice_s: float, *threads):  # noqa: ANN002, ANN202 - fn(env, procs, done) -> SimPy process
    """Run SimPy processes whose jobs go to core 0 of two workers and a shard on 2 cores (with
    per-thread `after` chains, `Processors.run`); the finish times they note in `done`."""
    import simpy

    from pssim.costs import placement
    from pssim.scenario import scenario_from_dict
    from pssim.sim.resources import Processors

    scn = scenario_from_dict(
        {
            "name": "t",
            "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
            "cluster": {"workers": {"count": 2, "per_device": 2}, "servers": {"count": 1}},
        }
    )
    env = simpy.Environment()
    procs = Processors(env, scn, placement(scn, 2), overlapping=True, cpu_slice_s=slice_s)
    done: dict[str, float] = {}
    for thread in threads:
        env.process(thread(env, procs, done))
    env.run()
    return done


def test_a_thread_going_on_from_woken_work_keeps_the_core_for_the_rest_of_its_slice() -> None:
    # slice 1 s. A shard's thread aggregates (ORDINARY, 0.2 s from 0) and goes on to its update
    # (0.3 s) without sleeping; another thread's message work M (0.5 s) is woken at 0.1. The shard
    # still has the core: update 0.2-0.5, M 0.5-1.0. Woken anew instead, the update queues behind M
    # (0.7-1.0). A thread whose aggregation used its whole slice (1 s) has no claim left: M
    # 1.0-1.5, then its update 1.5-1.8.
    def run(agg: float, goes_on: bool) -> dict[str, float]:
        def shard(env, procs, done):  # noqa: ANN001, ANN202 - SimPy process
            a = procs.run(0, agg)
            yield a
            yield procs.run(0, 0.3, after=a if goes_on else None)
            done["update"] = env.now

        def other(env, procs, done):  # noqa: ANN001, ANN202 - SimPy process
            yield env.timeout(0.1)
            yield procs.run(0, 0.5)
            done["M"] = env.now

        return _threads_on_core0(1.0, shard, other)

    assert run(0.2, True) == pytest.approx({"update": 0.5, "M": 1.0}, rel=1e-9)
    assert run(0.2, False) == pytest.approx({"M": 0.7, "update": 1.0}, rel=1e-9)
    assert run(1.0, True) == pytest.approx({"M": 1.5, "update": 1.8}, rel=1e-9)


def test_a_message_to_a_core_that_computes_waits_for_the_compute_turn_to_end() -> None:
    # 1 worker (core 0) and its shard (core 1), free links and message CPU, a 1.5 ms slice; a 5 ms
    # compute job holds core 1 from 0. Messages to the shard sent at 0 and 1 ms are handed to it
    # when the compute job's slice ends (1.5 ms), together and in order; one sent at 2 ms, when the
    # compute job runs on past its slice with nothing else wanting the core (unprotected), at once;
    # one sent at 6 ms, once the core is free, at once. Messages to the worker, whose core does not
    # compute, are handed over at once.
    from pssim.profile import LinearCost
    from pssim.sim.resources import COMPUTE

    env, net, procs = _one_link(100.0, cpu_slice_s=1.5e-3)
    free = LinearCost()
    net.enable_endpoint_cpu(procs, [free, free], [free, free], [0, 1])
    procs.run(1, 5e-3, COMPUTE)
    got: list[tuple[str, float]] = []

    def sender():  # noqa: ANN202 - SimPy process
        for name, t, dst in (
            ("a", 0.0, 1),
            ("w", 0.5e-3, 0),
            ("b", 1e-3, 1),
            ("c", 2e-3, 1),
            ("d", 6e-3, 1),
        ):
            yield env.timeout(t - env.now)
            ep = dst
            net.send(
                net.resources(1 - dst, dst),
                1.0,
                (
                    0.0,
                    lambda m, ep=ep, name=name: net.hand_over(
                        ep, lambda _m: got.append((name, env.now)), m
                    ),
                ),
            )

    env.process(sender())
    env.run()
    assert [n for n, _ in got] == ["w", "a", "b", "c", "d"]
    assert [t for _, t in got] == pytest.approx([0.5e-3, 1.5e-3, 1.5e-3, 2.0e-3, 6e-3], abs=1e-9)


def test_the_model_hands_every_message_to_its_receiver_and_every_push_end_to_its_pusher() -> None:
    # 2 workers and their shard on one core, message CPU charged: per step and
    # worker, the shard gets a pull request and a push (each through its own hand-over), the
    # worker a reply and the notice that its push is through; the push's arrival time is when it
    # was delivered, not when the shard's thread saw it
    import dataclasses

    import numpy as np

    from pssim.costs import build_costs
    from pssim.profile import LinearCost
    from pssim.scenario import scenario_from_dict
    from pssim.sim import simulate
    from pssim.sim.resources import Network

    scn = scenario_from_dict(
        {
            "name": "ho",
            "model": {"kind": "mlp", "input_dim": 64, "hidden": [64], "output_dim": 10},
            "training": {"batch_size": 32, "steps": 6, "warmup_steps": 1},
            "cluster": {
                "workers": {"count": 2, "device": "cpu", "per_device": 2},
                "servers": {"count": 1},
            },
            "sync": {"mode": "asp"},
        }
    )
    base = build_costs(scn)
    msg = LinearCost(a=2e-4)
    costs = dataclasses.replace(
        base,
        cores=1,
        cpu_slice_s=1.5e-3,
        compute_s=5e-3,
        ops={**base.ops, "msg_send": msg, "msg_recv": msg},
    )
    seen: list[tuple[int, str, float]] = []
    orig = Network.hand_over

    def spy(self, ep, fn, m):  # noqa: ANN001, ANN202
        seen.append((ep, fn.__name__, self.env.now))
        orig(self, ep, fn, m)

    Network.hand_over = spy  # type: ignore[method-assign]
    try:
        rec, _ = simulate(scn, costs)
    finally:
        Network.hand_over = orig  # type: ignore[method-assign]
    names = [(ep, name) for ep, name, _ in seen]
    steps = scn.training.steps
    for w in (0, 1):
        assert names.count((w, "_take_reply")) == steps and names.count((w, "pushed")) == steps
    assert names.count((2, "_take")) == 2 * 2 * steps  # pull requests and pushes at the shard
    arrivals = sorted(t for ep, name, t in seen if name == "pushed")
    assert np.sort(rec.grad_arrive_s.ravel()) == pytest.approx(arrivals, abs=1e-12)


def test_without_endpoint_cpu_a_hand_over_is_at_once() -> None:
    from pssim.sim.resources import COMPUTE

    env, net, procs = _one_link(100.0, cpu_slice_s=1.5e-3)
    procs.run(1, 5e-3, COMPUTE)
    got: list[float] = []
    net.hand_over(1, lambda _m: got.append(env.now), None)
    assert got == [0.0]


def test_the_default_slice_is_linux_s() -> None:
    # kernel/sched/fair.c: base_slice = 0.75 ms x (1 + ilog2(min(cpus, 8)))
    from pssim.profile import linux_base_slice_s

    assert [linux_base_slice_s(c) for c in (1, 2, 3, 4, 8, 64)] == pytest.approx(
        [0.75e-3, 1.5e-3, 1.5e-3, 2.25e-3, 3e-3, 3e-3]
    )


@settings(max_examples=200, deadline=None)
@given(instances())
def test_python_and_numpy_filling_agree(inst: tuple) -> None:
    # small systems are filled in plain Python, large ones with numpy: the same allocation
    import pssim.fluid as fluid

    caps, flows = inst
    rates = []
    for small in (10**9, 0):
        old, fluid._SMALL = fluid._SMALL, small
        try:
            fs = FluidSystem(caps)
            for key, (res, cap) in flows.items():
                fs.add(0.0, res, 1.0, key, cap=cap)
            fs.recompute()
            check_max_min(fs, flows)
            rates.append(fs.rates())
        finally:
            fluid._SMALL = old
    assert rates[0].keys() == rates[1].keys()
    for k in rates[0]:
        assert rates[0][k] == pytest.approx(rates[1][k], rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    instances(),
    st.lists(st.floats(0.1, 10.0), min_size=25, max_size=25),
    st.lists(st.floats(0.0, 3.0), min_size=25, max_size=25),
)
def test_small_fluid_completes_flows_when_fluid_system_does(
    inst: tuple, amounts: list[float], starts: list[float]
) -> None:
    # psreal's arbiter runs SmallFluid, the simulator FluidSystem: one model, the same completions
    from pssim.fluid import SmallFluid

    caps, flows = inst
    keys = list(flows)
    order = sorted(range(len(keys)), key=lambda i: (starts[i], i))

    def run(cls: type) -> dict[Hashable, float]:
        fs = cls(caps)
        done: dict[Hashable, float] = {}
        pending = list(order)
        while pending or len(fs):
            t_next = fs.next_completion() if len(fs) else np.inf
            t_start = starts[pending[0]] if pending else np.inf
            if t_start <= t_next:
                i = pending.pop(0)
                res, cap = flows[keys[i]]
                fs.add(t_start, res, amounts[i], keys[i], cap=cap)
            else:
                for k in fs.pop_completed(t_next):
                    done[k] = t_next
            fs.recompute()
        return done

    a, b = run(FluidSystem), run(SmallFluid)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-9)


def _one_link(gbps: float, cpu_slice_s: float = 0.0):  # noqa: ANN202 - (env, network, processors) of 1 worker and 1 server on 2 cores
    import simpy

    from pssim.costs import build_costs, placement
    from pssim.scenario import scenario_from_dict
    from pssim.sim.resources import Network, Processors

    nic = {"bandwidth_gbps": gbps, "latency_us": 0}
    scn = scenario_from_dict(
        {
            "name": "t",
            "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
            "cluster": {"workers": {"count": 1, "nic": nic}, "servers": {"count": 1, "nic": nic}},
        }
    )
    env = simpy.Environment()
    return (
        env,
        Network(env, scn, 1, build_costs(scn)),
        Processors(env, scn, placement(scn, 2), overlapping=True, cpu_slice_s=cpu_slice_s),
    )


def _send_at(env, net, times: list[float], nbytes: float) -> list[float]:  # noqa: ANN001
    """Send worker -> server messages at `times`; run; the delivery times."""
    delivered: list[float] = []

    def sender():  # noqa: ANN202 - SimPy process
        for t in times:
            yield env.timeout(t - env.now)
            net.send(net.resources(0, 1), nbytes, (0.0, lambda _m: delivered.append(env.now)))

    env.process(sender())
    env.run()
    return delivered


def test_the_arbiter_handles_what_arrives_during_a_pass_in_one_more_pass() -> None:
    # psreal's arbiter loop: a pass costs a (here 1 ms) of CPU; what arrives while a pass runs
    # is handled by the next pass, all at once. Three tiny messages started at 0, 0.3 and 0.6 ms
    # (each starting, draining and being delivered at once): pass 1 at 0 ms, then one pass at
    # 1 ms for the rest -> 2 ms of arbiter CPU (one pass per instant would be 6 ms).
    from pssim.profile import LinearCost

    env, net, procs = _one_link(100.0)
    free = LinearCost()
    net.enable_endpoint_cpu(
        procs, [free, free], [free, free], [0, 1], arbiter=(1, LinearCost(a=1e-3))
    )
    assert len(_send_at(env, net, [0.0, 0.3e-3, 0.6e-3], 1.0)) == 3
    assert procs.arbiter_work == pytest.approx(2e-3, rel=1e-9)


def test_an_end_that_is_awake_pays_the_busy_cost_for_its_next_message() -> None:
    # a message's CPU at an end costs `wake` (1 ms) when the end's thread was idle and `busy`
    # (0.1 ms) when it is still working on another message: two messages sent together from
    # worker 0 to the server cost 1 + 0.1 ms at each end; a third, sent once all is done, 1 ms again
    from pssim.profile import LinearCost

    env, net, procs = _one_link(1.0)
    wake, busy = LinearCost(a=1e-3), LinearCost(a=1e-4)
    net.enable_endpoint_cpu(procs, [wake, wake], [wake, wake], [0, 1], busy_cost=(busy, busy))
    assert len(_send_at(env, net, [0.0, 0.0, 0.01], 1000.0)) == 3
    assert procs.cpu_work == pytest.approx([2.1e-3, 2.1e-3], rel=1e-9)


def test_a_thread_sending_one_message_after_another_keeps_the_core_to_the_last() -> None:
    # one worker (core 0) sends three messages to its shard at 0 from its one sending thread, each
    # 0.2 ms of CPU (slice 1 ms, free links); another thread's woken work (0.5 ms) arrives on core
    # 0 at 0.1 ms. The sending thread goes on from one message to the next with the core: the
    # messages are delivered at 0.2, 0.4 and 0.6 ms, the other work ends at 1.1 ms. (A message
    # queued behind its thread's previous one used to lose that hold: the third went at 1.1 ms.)
    from pssim.profile import LinearCost

    env, net, procs = _one_link(100.0, cpu_slice_s=1e-3)
    net.enable_endpoint_cpu(
        procs, [LinearCost(a=2e-4), LinearCost()], [LinearCost(), LinearCost()], [0, 1]
    )
    other: list[float] = []

    def woken():  # noqa: ANN202 - SimPy process
        yield env.timeout(0.1e-3)
        yield procs.run(0, 0.5e-3)
        other.append(env.now)

    env.process(woken())
    assert _deliveries(env, net, [(0, 1)] * 3, 10.0) == pytest.approx(
        [0.2e-3, 0.4e-3, 0.6e-3], abs=1e-9
    )
    assert other == pytest.approx([1.1e-3], abs=1e-9)


def _two_workers_one_server(bandwidth_gbps: float):  # noqa: ANN202 - (env, Network, Processors)
    """Workers 0 and 1 and the server (endpoint 2) on a 2-core host, no link latency."""
    import simpy

    from pssim.costs import build_costs, placement
    from pssim.scenario import scenario_from_dict
    from pssim.sim.resources import Network, Processors

    nic = {"bandwidth_gbps": bandwidth_gbps, "latency_us": 0}
    scn = scenario_from_dict(
        {
            "name": "t",
            "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
            "cluster": {"workers": {"count": 2, "nic": nic}, "servers": {"count": 1, "nic": nic}},
        }
    )
    env = simpy.Environment()
    return (
        env,
        Network(env, scn, 2, build_costs(scn)),
        Processors(env, scn, placement(scn, 2), overlapping=True),
    )


def _deliveries(env, net, pairs: list[tuple[int, int]], nbytes: float) -> list[float]:  # noqa: ANN001
    """Send one message per (src, dst) at the current time; run; when each was delivered."""
    got: list[float] = []
    for src, dst in pairs:
        net.send(net.resources(src, dst), nbytes, (0.0, lambda _m: got.append(env.now)))
    env.run()
    return got


def test_receiving_from_two_peers_wakes_two_threads() -> None:
    # psreal receives each peer's messages in a thread of that peer's own and sends from one
    # thread: workers 0 and 1 (core 0) each send one message to the server (core 1) at 0, and the
    # server sends one to each worker: each receive wakes its own thread (1 ms each), the
    # server's second send finds its sending thread awake (0.1 ms)
    from pssim.profile import LinearCost

    env, net, procs = _two_workers_one_server(1.0)
    wake, busy = LinearCost(a=1e-3), LinearCost(a=1e-4)
    net.enable_endpoint_cpu(procs, [wake] * 3, [wake] * 3, [0, 0, 1], busy_cost=(busy, busy))
    assert len(_deliveries(env, net, [(0, 2), (1, 2)], 1000.0)) == 2
    assert procs.cpu_work == pytest.approx(
        [2e-3, 2e-3], rel=1e-9
    )  # two sends, two receiving threads
    assert len(_deliveries(env, net, [(2, 0), (2, 1)], 1000.0)) == 2
    assert procs.cpu_work == pytest.approx([4e-3, 3.1e-3], rel=1e-9)
    # by process: each worker sent one and received one, the server received two and sent two
    assert procs.role_work == pytest.approx({0: 2e-3, 1: 2e-3, 2: 3.1e-3}, rel=1e-9)


def test_cpu_seconds_by_role_add_up_to_the_cores() -> None:
    # every job a core runs is some process's (but the arbiter's): the roles pinned to a core add
    # up to that core's CPU seconds, and every role that worked is listed
    import dataclasses

    from pssim.costs import build_costs, placement
    from pssim.profile import LinearCost
    from pssim.records import summarize
    from pssim.scenario import scenario_from_dict
    from pssim.sim import simulate

    scn = scenario_from_dict(
        {
            "name": "roles",
            "model": {"kind": "mlp", "input_dim": 64, "hidden": [64], "output_dim": 10},
            "training": {"batch_size": 32, "steps": 6, "warmup_steps": 1},
            "cluster": {"workers": {"count": 3, "device": "cpu"}, "servers": {"count": 2}},
            "sync": {"mode": "bsp"},
        }
    )
    base = build_costs(scn)
    msg = LinearCost(a=2e-4, b=1e-9)
    costs = dataclasses.replace(
        base,
        cores=2,
        cpu_slice_s=1.5e-3,
        compute_s=5e-3,
        ops={**base.ops, "msg_send": msg, "msg_recv": msg},
    )
    summary = summarize(scn, *simulate(scn, costs))
    roles, cores = summary["cpu_seconds_by_role"], summary["cpu_seconds"]
    assert set(roles) == {"worker0", "worker1", "worker2", "server0", "server1"}
    place = placement(scn, 2)
    for c in range(2):
        mine = [f"worker{p}" for p, k in enumerate(place.core_of_proc) if k == c] + [
            f"server{s}" for s, k in enumerate(place.core_of_server) if k == c
        ]
        assert sum(roles[r] for r in mine) == pytest.approx(cores[f"core{c}"], rel=1e-9)
    # a worker's CPU holds at least its compute, a server's its messages' fixed CPU
    assert min(roles[f"worker{p}"] for p in range(3)) >= 6 * 5e-3 * 0.5
    assert min(roles["server0"], roles["server1"]) >= 2 * 6 * 3 * 2e-4


def test_a_thread_handles_one_message_at_a_time() -> None:
    # each send costs 1 ms of CPU (receiving is free, the link a few microseconds). The server
    # sends one message to each worker at 0 from its one sending thread: delivered at 1 ms and
    # 2 ms, one after the other (shared evenly, both would be at 2 ms). Workers 0 and 1 each
    # send one to the server from their own threads, on their own cores: both at 1 ms.
    from pssim.profile import LinearCost

    free, ms = LinearCost(), LinearCost(a=1e-3)
    env, net, procs = _two_workers_one_server(100.0)
    net.enable_endpoint_cpu(procs, [free, free, ms], [free] * 3, [0, 1, 0])
    assert _deliveries(env, net, [(2, 0), (2, 1)], 10.0) == pytest.approx([1e-3, 2e-3], abs=1e-6)
    env, net, procs = _two_workers_one_server(100.0)
    net.enable_endpoint_cpu(procs, [ms] * 3, [free] * 3, [0, 1, 0])
    assert _deliveries(env, net, [(0, 2), (1, 2)], 10.0) == pytest.approx([1e-3, 1e-3], abs=1e-6)


def test_a_thread_that_goes_on_from_its_computation_keeps_its_turn() -> None:
    # workers 0 and 1 share core 0 (slice 1 s). A (worker 0's compute, 0.4 s) and B (worker 1's,
    # 2 s) arrive at 0; A runs first. Worker 0 then packs (0.8 s) without sleeping: it goes on
    # with what is left of A's slice (0.6 s), B takes its turn (1.0-2.0), the packing ends at
    # 2.2 and B at 3.2. Woken from a sleep of 1.2 s instead, when B has run on past its own slice
    # (0.4-1.4) alone, the packing takes the core at once (1.6-2.4; B ends at 3.2). A that used its
    # whole slice (1 s) leaves the packing none: it waits for B's turn first.
    from pssim.sim.resources import COMPUTE

    def run(a_work: float, goes_on: bool) -> dict[str, float]:
        def worker0(env, procs, done):  # noqa: ANN001, ANN202 - SimPy process
            a = procs.run(0, a_work, COMPUTE)
            yield a
            if not goes_on:
                yield env.timeout(1.2)
            yield procs.run(0, 0.8, after=a if goes_on else None)
            done["pack"] = env.now

        def worker1(env, procs, done):  # noqa: ANN001, ANN202 - SimPy process
            yield procs.run(0, 2.0, COMPUTE)
            done["B"] = env.now

        return _threads_on_core0(1.0, worker0, worker1)

    assert run(0.4, True) == pytest.approx({"pack": 2.2, "B": 3.2}, rel=1e-9)
    assert run(0.4, False) == pytest.approx({"pack": 2.4, "B": 3.2}, rel=1e-9)
    assert run(1.0, True) == pytest.approx({"pack": 2.8, "B": 3.8}, rel=1e-9)


def test_a_push_sent_straight_after_packing_takes_turns_with_the_core_mates_compute() -> None:
    # workers 0 and 1 on core 0 (slice 1 ms), the server on core 1; a send costs 1 ms of CPU,
    # receiving nothing, the link microseconds. Worker 1 computes 5 ms from 0; worker 0 computes
    # 0.4 ms, packs 0.1 ms and sends: the send goes on with worker 0's turn (0.5 ms left), waits
    # out worker 1's slice and is delivered at 2.5 ms. Sent by a thread woken from a sleep (no
    # `continues`) at 1.7 ms, when worker 1 has run on past its slice (0.5-1.5 ms) alone, it takes
    # the core at once and is delivered at 2.7 ms.
    import simpy

    from pssim.costs import build_costs, placement
    from pssim.profile import LinearCost
    from pssim.scenario import scenario_from_dict
    from pssim.sim.resources import COMPUTE, Network, Processors

    nic = {"bandwidth_gbps": 100.0, "latency_us": 0}
    scn = scenario_from_dict(
        {
            "name": "t",
            "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
            "cluster": {
                "workers": {"count": 2, "per_device": 2, "nic": nic},
                "servers": {"count": 1, "nic": nic},
            },
        }
    )
    free, ms = LinearCost(), LinearCost(a=1e-3)

    def delivered(goes_on: bool) -> float:
        env = simpy.Environment()
        net = Network(env, scn, 2, build_costs(scn))
        procs = Processors(env, scn, placement(scn, 2), overlapping=True, cpu_slice_s=1e-3)
        net.enable_endpoint_cpu(procs, [ms, ms, ms], [free] * 3, [0, 0, 1])
        got: list[float] = []

        def worker0():  # noqa: ANN202 - SimPy process
            a = procs.run(0, 0.4e-3, COMPUTE)
            yield a
            packed = procs.run(0, 0.1e-3, after=a)
            if goes_on:
                net.continues(0, packed)
            yield packed
            if not goes_on:
                yield env.timeout(1.2e-3)
            net.send(net.resources(0, 2), 10.0, (0.0, lambda _m: got.append(env.now)))

        def worker1():  # noqa: ANN202 - SimPy process
            yield procs.run(0, 5e-3, COMPUTE)

        env.process(worker0())
        env.process(worker1())
        env.run()
        return got[0]

    assert delivered(True) == pytest.approx(2.5e-3, abs=1e-6)
    assert delivered(False) == pytest.approx(2.7e-3, abs=1e-6)


def test_an_arbiter_pass_costs_what_the_profile_measured_after_as_long_a_sleep() -> None:
    # the profile says a pass costs 0.1 ms after a sleep of up to 1 ms and 1 ms after a longer
    # one (cold caches). Tiny messages at 0, 5 and 5.6 ms, each draining a moment after it
    # starts: the pass at 0 follows a long sleep (1 ms); the message's end waits for the next
    # pass, at once after it (0.1 ms). At 5 ms the same (asleep since 1.1 ms: 1 ms, until 6 ms);
    # the third message joins the pass at 6 ms (0.1 ms): 2.2 ms in all, where a flat 1 ms per
    # pass makes 4 ms
    from pssim.profile import LinearCost

    free = LinearCost()
    for by_sleep, work in (([(1e-3, 1e-4), (1.0, 1e-3)], 2.2e-3), ([], 4e-3)):
        env, net, procs = _one_link(100.0)
        net.enable_endpoint_cpu(
            procs,
            [free, free],
            [free, free],
            [0, 1],
            arbiter=(1, LinearCost(a=1e-3)),
            arbiter_by_sleep=by_sleep,
        )
        assert len(_send_at(env, net, [0.0, 5e-3, 5.6e-3], 1.0)) == 3
        assert procs.arbiter_work == pytest.approx(work, rel=1e-9)


def test_messages_started_together_reach_the_arbiter_one_after_another() -> None:
    # a pass costs 1 us. Two 125 kB messages sent at 0 on 1 Gbit/s (both through at 2 ms): the
    # first START wakes the arbiter, the second arrives while it handles that one and takes a
    # second pass; their completions, which the arbiter computes to fall at one instant, share a
    # third: 3 passes (one START pass for both would make 2)
    from pssim.profile import LinearCost

    free = LinearCost()
    env, net, procs = _one_link(1.0)
    net.enable_endpoint_cpu(
        procs, [free, free], [free, free], [0, 1], arbiter=(1, LinearCost(a=1e-6))
    )
    assert _send_at(env, net, [0.0, 0.0], 125e3) == pytest.approx([2e-3, 2e-3], rel=1e-6)
    assert procs.arbiter_work == pytest.approx(3e-6, rel=1e-9)
