"""The host model (pssim.sim.host): psreal's run of a scenario on this machine, its cores shared
as the kernel schedules threads (SlicedCore), every message's CPU at both ends, the link arbiter
(HostNetwork) and the processes' placement on the cores (HostProcessors). Closed-form times
checked by hand; benchmarks/*.py measure the rules on the real kernel."""

from __future__ import annotations

import pytest


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

    from pssim.sim.host import SlicedCore
    from pssim.sim.resources import COMPUTE

    for q, expect in (
        (0.5, {"A": 1.5, "B": 2.0}),
        (5.0, {"A": 1.0, "B": 2.0}),
        (0.0, {"A": 2.0, "B": 2.0}),
    ):
        env = simpy.Environment()
        got = _run_jobs(
            SlicedCore(env, "core0", q),
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

    from pssim.sim.host import SlicedCore
    from pssim.sim.resources import ARBITER, COMPUTE, ORDINARY

    env = simpy.Environment()
    got = _run_jobs(
        SlicedCore(env, "core0", 0.1),
        env,
        [("C", 0.0, 2.0, COMPUTE), ("M", 0.5, 0.5, ORDINARY)],
    )
    assert got == pytest.approx({"M": 1.0, "C": 2.5}, rel=1e-12)
    env = simpy.Environment()
    got = _run_jobs(
        SlicedCore(env, "core0", 0.1),
        env,
        [("C", 0.0, 2.0, COMPUTE), ("M", 0.5, 0.5, ORDINARY), ("R", 0.75, 0.25, ARBITER)],
    )
    assert got == pytest.approx({"R": 1.0, "M": 1.25, "C": 2.75}, rel=1e-12)
    env = simpy.Environment()
    got = _run_jobs(
        SlicedCore(env, "core0"),
        env,
        [("C", 0.0, 2.0, COMPUTE), ("M", 0.5, 0.5, ORDINARY), ("N", 0.5, 0.5, ORDINARY)],
    )
    assert got == pytest.approx({"M": 1.5, "N": 1.5, "C": 3.0}, rel=1e-12)
    env = simpy.Environment()
    got = _run_jobs(
        SlicedCore(env, "core0", 1.5),
        env,
        [("C", 0.0, 2.0, COMPUTE), ("M", 0.5, 0.5, ORDINARY), ("N", 0.5, 0.5, ORDINARY)],
    )
    assert got == pytest.approx({"M": 2.0, "N": 2.5, "C": 3.0}, rel=1e-12)
    env = simpy.Environment()
    got = _run_jobs(
        SlicedCore(env, "core0", 1.0),
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

    from pssim.sim.host import SlicedCore
    from pssim.sim.resources import COMPUTE, ORDINARY

    env = simpy.Environment()
    sp = SlicedCore(env, "core0", 1.0)
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
    short = SlicedCore(env, "core0", 1.0)
    short.run(0.4, COMPUTE)
    env.run(until=0.3)
    assert short.turn_left() == pytest.approx(0.1, abs=1e-12)
    env = simpy.Environment()
    even = SlicedCore(env, "core0")
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

    from pssim.sim.host import SlicedCore
    from pssim.sim.resources import COMPUTE

    def run(d: float) -> dict[str, float]:
        env = simpy.Environment()
        sp = SlicedCore(env, "core0", 1.0)
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
    per-thread `after` chains, `HostProcessors.run`); the finish times they note in `done`."""
    import simpy

    from pssim.layout import placement
    from pssim.scenario import scenario_from_dict
    from pssim.sim.host import HostProcessors

    scn = scenario_from_dict(
        {
            "name": "t",
            "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
            "cluster": {"workers": {"count": 2, "per_device": 2}, "servers": {"count": 1}},
        }
    )
    env = simpy.Environment()
    procs = HostProcessors(env, scn, placement(scn, 2), overlapping=True, cpu_slice_s=slice_s)
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
    from pssim.sim.host import HostNetwork

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
    orig = HostNetwork.hand_over

    def spy(self, ep, fn, m):  # noqa: ANN001, ANN202
        seen.append((ep, fn.__name__, self.env.now))
        orig(self, ep, fn, m)

    HostNetwork.hand_over = spy  # type: ignore[method-assign]
    try:
        rec, _ = simulate(scn, costs)
    finally:
        HostNetwork.hand_over = orig  # type: ignore[method-assign]
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


def _host_links(workers: int, gbps: float, cpu_slice_s: float = 0.0):  # noqa: ANN202
    """(env, HostNetwork, HostProcessors) of `workers` workers and one server on a 2-core host,
    no link latency: the server is endpoint `workers`."""
    import simpy

    from pssim.costs import build_costs
    from pssim.layout import link_layout, placement
    from pssim.scenario import scenario_from_dict
    from pssim.sim.host import HostNetwork, HostProcessors

    nic = {"bandwidth_gbps": gbps, "latency_us": 0}
    cluster = {"workers": {"count": workers, "nic": nic}, "servers": {"count": 1, "nic": nic}}
    scn = scenario_from_dict(
        {
            "name": "t",
            "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
            "cluster": cluster,
        }
    )
    env = simpy.Environment()
    return (
        env,
        HostNetwork(env, link_layout(scn, workers), build_costs(scn)),
        HostProcessors(env, scn, placement(scn, 2), overlapping=True, cpu_slice_s=cpu_slice_s),
    )


def _one_link(gbps: float, cpu_slice_s: float = 0.0):  # noqa: ANN202
    """1 worker and 1 server on 2 cores."""
    return _host_links(1, gbps, cpu_slice_s)


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


def _two_workers_one_server(bandwidth_gbps: float):  # noqa: ANN202
    """Workers 0 and 1 and the server (endpoint 2) on a 2-core host, no link latency."""
    return _host_links(2, bandwidth_gbps)


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

    from pssim.costs import build_costs
    from pssim.layout import placement
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

    from pssim.costs import build_costs
    from pssim.layout import link_layout, placement
    from pssim.profile import LinearCost
    from pssim.scenario import scenario_from_dict
    from pssim.sim.host import HostNetwork, HostProcessors
    from pssim.sim.resources import COMPUTE

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
        net = HostNetwork(env, link_layout(scn, 2), build_costs(scn))
        procs = HostProcessors(env, scn, placement(scn, 2), overlapping=True, cpu_slice_s=1e-3)
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
