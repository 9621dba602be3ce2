"""CPU a worker's compute phase used in a traced real run, beside the profile's compute per step.

    PSREAL_MSG_TRACE=DIR psreal run FILE
    python scripts/compute_cpu.py DIR [--warmup N]

For each worker process of the traced run: the median over its steps (from step N on, default 5)
of its main thread's CPU time in the compute phase (`cpu_compute_start` / `cpu_compute_end` in
psreal/msgtrace.py), the phase's wall time, and the process's CPU per step (all its threads).
Where workers share a core, wall > CPU; the CPU per step set against the profile's compute per
step (calibration run, one worker alone on its core) says whether a computation costs more or
less when other workers compute on the core too (docs/profiling.md). Prints numbers only.
"""

from __future__ import annotations

import argparse
import statistics

from psreal import msgtrace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace_dir")
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    roles, _ = msgtrace.load(a.trace_dir)
    for events in roles.values():
        start, end = {}, {}
        for e in events:
            if e[1] == "cpu_compute_start":
                start[e[3]] = e
            elif e[1] == "cpu_compute_end":
                end[e[3]] = e
        steps = sorted(k for k in start if k >= a.warmup and k in end)
        if not steps:
            continue
        cpu = statistics.median(end[k][4] - start[k][4] for k in steps)
        wall = statistics.median(end[k][0] - start[k][0] for k in steps)
        proc = [start[k + 1][5] - start[k][5] for k in steps if k + 1 in start]
        per = f"{statistics.median(proc) * 1e3:7.2f}" if proc else "      -"
        print(
            f"worker process {start[steps[0]][2]}: compute CPU {cpu * 1e3:7.2f} ms  "
            f"wall {wall * 1e3:7.2f} ms  "
            f"process CPU per step {per} ms  ({len(steps)} steps)"
        )


if __name__ == "__main__":
    main()
