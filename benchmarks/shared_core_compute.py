"""What a worker's compute step costs on a core it shares with other compute-bound workers.

    python benchmarks/shared_core_compute.py [SCENARIO.yaml ...] [--seconds S] [--k 1,2,3]

For each scenario's model and batch, k processes pinned to one core run psreal's compute step
(psreal.profiler._worker_compute: batch, zero_grad, forward, loss, backward, loss read back) in a
loop for S seconds, all at once, as workers that share a core and compute in step do. Prints, for
k = 1, 2, 3, the CPU time per step of each process (its thread CPU clock, so time slices given to
the others do not count), the wall time per step, and the CPU per step relative to k = 1: above
1, the steps of several models interleaved in slices cost more CPU (each slice starts with caches
the others filled). One torch thread per process, as a role runs. Prints numbers only.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time


def _loop(path: str, core: int, seconds: float, seed: int, start, out) -> None:  # noqa: ANN001
    os.sched_setaffinity(0, {core})
    import torch

    torch.set_num_threads(1)
    from psreal.profiler import _worker_compute
    from pssim.scenario import load_scenario

    scn = load_scenario(path)
    step, refresh = _worker_compute(scn, torch.device("cpu"), scn.seed + seed)
    for _ in range(5):
        step()
    start.wait()
    cpu, wall = [], []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        refresh()
        c0, w0 = time.thread_time(), time.perf_counter()
        step()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    out.put((statistics.median(cpu), statistics.median(wall), len(cpu)))


def run(path: str, k: int, seconds: float, core: int) -> tuple[float, float, int]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(k), ctx.Queue()
    ps = [ctx.Process(target=_loop, args=(path, core, seconds, i, start, out)) for i in range(k)]
    for p in ps:
        p.start()
    got = [out.get() for _ in ps]
    for p in ps:
        p.join()
    return (
        statistics.median(g[0] for g in got),
        statistics.median(g[1] for g in got),
        sum(g[2] for g in got),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "scenarios", nargs="*", default=["scenarios/validation/v04-bsp-4w2s-straggler.yaml"]
    )
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--k", default="1,2,3")
    a = ap.parse_args()
    core = sorted(os.sched_getaffinity(0))[0]
    for path in a.scenarios:
        base = None
        for k in (int(x) for x in a.k.split(",")):
            cpu, wall, n = run(path, k, a.seconds, core)
            base = base or cpu
            print(
                f"{os.path.basename(path)}  k={k}  cpu/step {cpu * 1e3:7.3f} ms"
                f"  wall/step {wall * 1e3:7.3f} ms"
                f"  cpu vs k=1 {cpu / base:5.2f}  steps {n}",
                flush=True,
            )


if __name__ == "__main__":
    main()
