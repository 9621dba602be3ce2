"""How fast pssim simulates: events per second, wall time, and how both grow with workers and steps.

Prints, for this machine:
  - SimPy's bare event rate: processes that do nothing but `yield env.timeout(...)`, the ceiling any
    SimPy model can reach;
  - case a: 1024 workers x 16 PS shards x 100 BSP steps (a ~1M-parameter mlp cut into >= 16
    partitions, step_time_s 0.05, profile none);
  - case b: 64 workers under ASP (with jitter, so nothing runs in lockstep);
  - case c: wall time against workers (64 .. 4096) at a fixed step count, and against steps at a
    fixed worker count, with the fitted growth exponent (1.0 = linear).
For each run: wall and CPU seconds, SimPy events (the scheduler's count, summary.json `events`),
messages (each one a fluid flow that starts, drains and is delivered), and the cost per event
next to SimPy's bare cost per event. Two ratios are printed: per SimPy event, and per model
event (SimPy events + messages), because the simulator delivers many messages per SimPy event
(all messages that finish at one instant share one timeout).

    .venv/bin/python benchmarks/sim_speed.py            # everything (about a minute)
    .venv/bin/python benchmarks/sim_speed.py --quick    # smaller sizes, for a smoke run
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
    ap.add_argument("--cases", default="abc", help="which cases to run, e.g. 'a' or 'bc'")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the best is printed")
    args = ap.parse_args()
    q = args.quick

    rate = bare_simpy_rate(200_000 if q else 1_000_000)
    print(f"SimPy bare event rate: {rate:,.0f} timeouts/s ({1e6 / rate:.2f} us per event)")

    if "a" in args.cases:
        W, T = (256, 20) if q else (1024, 100)
        print(f"\ncase a: {W} workers x 16 shards x {T} BSP steps")
        run_case(bench_scenario(W, 16, T), rate, f"a  bsp W={W} S=16 T={T}", args.repeat)

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


if __name__ == "__main__":
    main()
