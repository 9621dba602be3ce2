"""The max-min fair fluid model (pssim.fluid.FluidSystem) that both backends use for links and
devices.

Max-min fairness by progressive filling (Bertsekas & Gallager, "Data Networks", 2nd ed., sec.
6.5.2).
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
