"""What a thread woken on a busy core does when it goes on from its woken work to compute.

    .venv/bin/python benchmarks/woken_compute.py [--trials N] [--unpack-ms U] [--compute-ms C]
        [--delays-ms D1,D2,...]

Two processes share one core, as two CPU workers (`per_device: 2`) do. A controller on the other
core starts A (C ms of CPU work, a loop on its thread's CPU clock: a worker's computation), then
d ms later wakes B through a pipe (a reply reaching a worker); B does U ms of work (unpacking the
reply), then C ms (its computation) without sleeping in between, as psreal's worker does. Both
sleep 2-20 ms between trials, as workers wait for their replies. Each loop notes every gap in its
own run (another thread had the core), so the printout shows, per d:

- `preempts`: how often B's wake-up took the core from A at once (A's run ends within 0.15 ms of
  the wake-up); else B waits for A's slice to end;
- `B holds`: the median length of B's first turn once it has the core, unpacking and computing
  until A runs again (about one slice: the kernel does not take the core back when the thread
  goes from its woken work to computing);
- `A slice`: where B waited, the median length of A's first run, from its start to B's turn
  (the kernel's time slice here, less A's own wake-up);
- the median end of A and of B after A's start.

Woken past the slice A got with the core (`--compute-ms 4 --delays-ms 1.8,2.4,3.0`), B takes
the core at once in every trial: the kernel protects one slice from the moment a thread gets the
core (EEVDF's run to parity), and a thread that runs on alone past it has no such claim.
`pssim.sim.host.SlicedCore` models both: woken work waits for a protected compute slice,
and a woken computation takes the core from a compute job run on past its slice
(tests/test_fluid.py, `test_a_woken_thread_waits_for_a_protected_slice_...`). Letting B's
computation go on with its unpacking's slice (`B holds`) was tried twice and taken back
(docs/profiling.md). Results in reports/benchmarks/woken_compute.txt.

Prints numbers only.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.busy_core_latency import print_header, two_cores  # noqa: E402

DELAYS_MS = (0.3, 0.6, 0.9, 1.2)
GAP_S = 30e-6  # a pause in a loop longer than this: something else had the core


def _spin(seconds: float, runs: list[tuple[float, float]]) -> None:
    """`seconds` of this thread's CPU; appends its uninterrupted runs (wall start, end) to
    `runs`."""
    c0 = time.thread_time()
    t = start = time.perf_counter()
    while time.thread_time() - c0 < seconds:
        n = time.perf_counter()
        if n - t > GAP_S:
            runs.append((start, t))
            start = n
        t = n
    runs.append((start, t))


def _role(core: int, conn, works: tuple[float, ...]) -> None:  # noqa: ANN001 - a Pipe end

    os.sched_setaffinity(0, {core})
    while conn.recv():
        runs: list[tuple[float, float]] = []
        for w in works:  # back to back, no sleep in between
            _spin(w, runs)
        merged = [runs[0]]
        for s, e in runs[1:]:  # one run goes on from one piece of work to the next
            if s - merged[-1][1] <= GAP_S:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        conn.send(merged)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=800)
    ap.add_argument("--unpack-ms", type=float, default=0.1)
    ap.add_argument("--compute-ms", type=float, default=2.0)
    ap.add_argument(
        "--delays-ms",
        type=str,
        default=",".join(str(d) for d in DELAYS_MS),
        help="comma-separated wake-up delays d (default %(default)s)",
    )
    args = ap.parse_args()
    delays = tuple(float(x) for x in args.delays_ms.split(","))
    cores = two_cores()
    if cores is None:
        return 2

    os.sched_setaffinity(0, {cores[1]})
    c, u = args.compute_ms * 1e-3, args.unpack_ms * 1e-3
    a_end, b_end = mp.Pipe()
    a2_end, b2_end = mp.Pipe()
    pa = mp.Process(target=_role, args=(cores[0], b_end, (c,)))
    pb = mp.Process(target=_role, args=(cores[0], b2_end, (u, c)))
    pa.start()
    pb.start()
    rng = random.Random(1)
    rows: dict[float, list[tuple[bool, float, float | None, float, float]]] = {
        d: [] for d in delays
    }
    for _ in range(args.trials):
        d = rng.choice(delays)
        time.sleep(rng.uniform(2e-3, 20e-3))
        t0 = time.perf_counter()
        a_end.send(True)
        while time.perf_counter() - t0 < d * 1e-3:
            pass
        tw = time.perf_counter()
        a2_end.send(True)
        ra, rb = a_end.recv(), a2_end.recv()
        # who had the core when: consecutive runs of one process, with no run of the other in
        # between, are one span (short pauses are the kernel's own work)
        spans: list[list] = []
        for s, e, who in sorted([(s, e, "A") for s, e in ra] + [(s, e, "B") for s, e in rb]):
            if spans and spans[-1][2] == who:
                spans[-1][1] = e
            else:
                spans.append([s, e, who])
        preempts = ra[0][1] - tw < 0.15e-3
        b_first = next(sp for sp in spans if sp[2] == "B")
        holds = b_first[1] - b_first[0]
        a_slice = spans[0][1] - spans[0][0] if spans[0][2] == "A" and not preempts else None
        rows[d].append((preempts, holds, a_slice, ra[-1][1] - t0, rb[-1][1] - t0))
        if os.environ.get("WOKEN_COMPUTE_TRACE"):
            ev = sorted([(s, e, "A") for s, e in ra] + [(s, e, "B") for s, e in rb])
            print(
                f"d {d:.1f} B woken at {(tw - t0) * 1e3:.2f}: "
                + " ".join(f"{w}[{(s - t0) * 1e3:.2f}-{(e - t0) * 1e3:.2f}]" for s, e, w in ev)
            )
    a_end.send(False)
    a2_end.send(False)
    pa.join()
    pb.join()
    print_header("woken_compute", cores, args.trials, "trials")
    print(
        f"A: {args.compute_ms} ms of compute; "
        f"B woken d ms later: {args.unpack_ms} ms of woken work, then "
        f"{args.compute_ms} ms of compute without sleeping; times in ms"
    )
    for d in delays:
        r = rows[d]
        slices = [row[2] for row in r if row[2] is not None]
        print(
            f"d {d:.1f}  trials {len(r):4d}  preempts {sum(x[0] for x in r) / len(r):.2f}  "
            f"B holds {statistics.median(x[1] for x in r) * 1e3:.2f}  "
            f"A slice {statistics.median(slices) * 1e3 if slices else float('nan'):.2f}  "
            f"A ends {statistics.median(x[3] for x in r) * 1e3:.2f}  "
            f"B ends {statistics.median(x[4] for x in r) * 1e3:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
