"""How fast pssim simulates: events per second, wall time, and how both grow with workers and
steps, each against the goals of the simulator-at-scale issue.

Prints, for this machine:
  - SimPy's bare event rate: processes that do nothing but `yield env.timeout(...)`, the ceiling
    any SimPy model can reach; every goal in seconds is scaled by it (goals are set at 0.9 M/s);
  - case a: 1024 workers x 16 PS shards x 100 BSP steps (a ~1M-parameter mlp cut into >= 16
    partitions, step_time_s 0.05, profile none); goal <= 5 s;
  - case b: 64 workers under ASP (with jitter, so nothing runs in lockstep);
  - case c: wall time against workers (64 .. 4096) at a fixed step count, and against steps at a
    fixed worker count, with the fitted growth exponents (1.0 = linear); goals <= 1.1 and 1.05;
  - case d: a 1.3 B-parameter transformer in >= 1,000 partitions, 64 x 8 x 50; goal <= 10 s;
  - case e (asked for with --cases e, not --quick): 10,000 workers x 64 shards x 100 steps; goal
    <= 60 s and 4 GB.
For each run: wall and CPU seconds, SimPy events (the scheduler's count, summary.json `events`),
messages (each one a fluid flow that starts, drains and is delivered), and the cost per event
next to SimPy's bare cost per event. Two ratios are printed: per SimPy event, and per model
event (SimPy events + messages), because the simulator delivers many messages per SimPy event
(all messages that finish at one instant share one timeout). With --quick the sizes are smaller
and the goals scaled down with the worker-steps.

    .venv/bin/python benchmarks/sim_speed.py --quick    # make bench: the quick cases
    .venv/bin/python benchmarks/sim_speed.py            # the issue's sizes (minutes)
    .venv/bin/python benchmarks/sim_speed.py --cases a --repeat 3   # case a, best of 3

Timings are of `pssim.sim.simulate` alone (scenario validation and result files excluded); the
machine should be otherwise idle, or use --repeat and read the best.
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from typing import Any

import simpy

from pssim.scenario import Scenario, scenario_from_dict
from pssim.sim import simulate


def bench_scenario(
    workers: int, shards: int, steps: int, mode: str = "bsp", jitter: float = 0.0
) -> Scenario:
    """The benchmark cluster: ~1.07M-parameter mlp (4.3 MB), 200 kB partitions (26 of them)."""
    data: dict[str, Any] = {
        "name": "bench",
        "model": {"kind": "mlp", "input_dim": 784, "hidden": [1024, 256], "output_dim": 10},
        "training": {"batch_size": 64, "steps": steps, "warmup_steps": min(5, steps - 1)},
        "cluster": {
            "workers": {"count": workers, "nic": {"bandwidth_gbps": 10.0, "latency_us": 50}},
            "servers": {"count": shards, "nic": {"bandwidth_gbps": 25.0, "latency_us": 50}},
        },
        "compute": {"step_time_s": 0.05, "profile": "none"},
        "sync": {"mode": mode},
        "sharding": {"policy": "range", "partition_bytes": 200_000},
    }
    if jitter:
        data["stragglers"] = {"jitter": {"distribution": "exponential", "cv": jitter}}
    return scenario_from_dict(data)


def bare_simpy_rate(n_events: int = 1_000_000, n_procs: int = 1000, repeats: int = 3) -> float:
    """Timeouts per second of processes that only wait (best of `repeats`)."""

    def proc(env: simpy.Environment, d: float):  # noqa: ANN202 - SimPy process
        while True:
            yield env.timeout(d)

    best = math.inf
    for _ in range(repeats):
        env = simpy.Environment()
        for i in range(n_procs):
            env.process(proc(env, 1.0 + i * 1e-3))
        horizon = n_events / n_procs  # each process fires about once per unit of time
        gc.collect()
        t0 = time.perf_counter()
        env.run(until=horizon)
        dt = time.perf_counter() - t0
        best = min(best, dt / next(env._eid))
    return 1.0 / best


def run_case(scn: Scenario, bare_rate: float, label: str, repeat: int = 1) -> dict[str, float]:
    wall, cpu = math.inf, math.inf
    for _ in range(repeat):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        _, extra = simulate(scn)
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    ev, msgs = extra["events"], extra["messages"]
    per_event = wall / ev
    per_model_event = wall / (ev + msgs)
    bare = 1.0 / bare_rate
    print(
        f"{label:<34} wall {wall:7.2f} s  cpu {cpu:7.2f} s  simpy events {ev:>9,}  "
        f"messages {msgs:>10,}  "
        f"events/s {ev / wall:>9,.0f}  model events/s {(ev + msgs) / wall:>10,.0f}  "
        f"x bare: {per_event / bare:5.1f} per event, {per_model_event / bare:4.1f} per model event"
    )
    return {"wall": wall, "cpu": cpu, "events": ev, "messages": msgs}


# The goals of the simulator-at-scale issue, in seconds at SimPy's usual bare rate on the 2-core
# development machine (~0.9 M timeouts/s); each is scaled by the bare rate measured in the same run
GOAL_BARE_RATE = 0.9e6
GOALS_S = {"a": 5.0, "d": 10.0, "e": 60.0}  # case -> wall seconds at GOAL_BARE_RATE
GOAL_EXPONENT = {"workers": 1.1, "steps": 1.05}


def check(label: str, value: float, goal: float, unit: str = "s") -> None:
    """Print a measured value against its goal."""
    verdict = "meets" if value <= goal else "MISSES"
    print(f"   goal {label}: {value:.2f} {unit} against <= {goal:.2f} {unit}: {verdict} the goal")


def transformer_scenario(workers: int, shards: int, steps: int) -> Scenario:
    """A ~1.3 B-parameter transformer (24 layers, d_model 2048, vocab 50,257) cut into >= 1,000
    partitions of at most 4 MB, 100 Gbit/s NICs, compute fixed at 0.5 s."""
    return scenario_from_dict(
        {
            "name": "bench-transformer",
            "model": {
                "kind": "transformer",
                "layers": 24,
                "d_model": 2048,
                "heads": 16,
                "seq_len": 1024,
                "vocab": 50257,
            },
            "training": {"batch_size": 8, "steps": steps, "warmup_steps": min(5, steps - 1)},
            "cluster": {
                "workers": {"count": workers, "nic": {"bandwidth_gbps": 100.0, "latency_us": 5}},
                "servers": {"count": shards, "nic": {"bandwidth_gbps": 100.0, "latency_us": 5}},
            },
            "compute": {"step_time_s": 0.5, "profile": "none"},
            "sync": {"mode": "bsp"},
            "sharding": {"policy": "greedy_bytes", "partition_bytes": 4_000_000},
        }
    )


def growth_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x): 1.0 means linear growth."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mx) ** 2 for a in lx
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, ~20 s)")
    ap.add_argument(
        "--cases", default="abcd", help="which cases to run, e.g. 'a' or 'bc' ('e': 10,000 workers)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the best is printed")
    args = ap.parse_args()
    q = args.quick

    rate = bare_simpy_rate(200_000 if q else 1_000_000)
    print(f"SimPy bare event rate: {rate:,.0f} timeouts/s ({1e6 / rate:.2f} us per event)")

    scale = GOAL_BARE_RATE / rate  # a goal in seconds on a machine with this bare rate
    if "a" in args.cases:
        W, T = (256, 20) if q else (1024, 100)
        print(f"\ncase a: {W} workers x 16 shards x {T} BSP steps")
        got = run_case(bench_scenario(W, 16, T), rate, f"a  bsp W={W} S=16 T={T}", args.repeat)
        # --quick: the goal scaled down with the worker-steps
        check("case a", got["wall"], GOALS_S["a"] * scale * (W * T) / (1024 * 100))

    if "b" in args.cases:
        T = 30 if q else 100
        print(f"\ncase b: 64 workers ASP (exponential jitter cv 0.3) x 16 shards x {T} steps")
        run_case(
            bench_scenario(64, 16, T, mode="asp", jitter=0.3),
            rate,
            f"b  asp W=64 S=16 T={T}",
            args.repeat,
        )

    if "c" in args.cases:
        workers = [64, 256, 1024] if q else [64, 256, 1024, 4096]
        T = 10 if q else 20
        print(f"\ncase c: BSP, 16 shards, {T} steps, growing workers")
        walls = [
            run_case(bench_scenario(W, 16, T), rate, f"c  bsp W={W} S=16 T={T}", args.repeat)[
                "wall"
            ]
            for W in workers
        ]
        for W, w in zip(workers, walls, strict=True):
            print(f"   W={W:<5} {1e6 * w / (W * T):7.1f} us per worker-step")
        print(f"   wall ~ workers^{growth_exponent(workers, walls):.2f}")
        check("exponent in workers", growth_exponent(workers, walls), GOAL_EXPONENT["workers"], "")
        steps = [10, 20, 40] if q else [25, 50, 100, 200]
        W = 256
        print(f"\ncase c: BSP, 16 shards, {W} workers, growing steps")
        walls = [
            run_case(bench_scenario(W, 16, T), rate, f"c  bsp W={W} S=16 T={T}", args.repeat)[
                "wall"
            ]
            for T in steps
        ]
        for T, w in zip(steps, walls, strict=True):
            print(f"   T={T:<5} {1e6 * w / (W * T):7.1f} us per worker-step")
        print(f"   wall ~ steps^{growth_exponent(steps, walls):.2f}")
        check("exponent in steps", growth_exponent(steps, walls), GOAL_EXPONENT["steps"], "")

    if "d" in args.cases:
        W, S, T = (16, 8, 10) if q else (64, 8, 50)
        scn = transformer_scenario(W, S, T)
        from pssim.sharding import plan_shards

        parts = sum(len(s) for s in plan_shards(scn).shards)
        print(f"\ncase d: 1.3 B-parameter transformer, {parts} partitions, {W} x {S} x {T} BSP")
        got = run_case(scn, rate, f"d  bsp W={W} S={S} T={T}", args.repeat)
        check("case d", got["wall"], GOALS_S["d"] * scale * (W * T) / (64 * 50))

    if "e" in args.cases and not q:
        print("\ncase e: 10,000 workers x 64 shards x 100 BSP steps")
        import resource

        got = run_case(bench_scenario(10_000, 64, 100), rate, "e  bsp W=10000 S=64 T=100", 1)
        check("case e", got["wall"], GOALS_S["e"] * scale)
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        check("case e memory (this process's peak)", peak_gb, 4.0, "GB")


if __name__ == "__main__":
    main()
