#!/usr/bin/env python3
"""What a pass of psreal's link arbiter costs by how long it slept before it.

    PSREAL_ARBITER_LOG=FILE psreal run SCENARIO      # the arbiter logs (sleep, CPU) per pass
    python scripts/arbiter_passes.py FILE [FILE...]

For each log: the passes, their CPU in all, and per bin of the sleep before a pass (the bins of
psreal.profiler.ARBITER_SLEEP_BINS_S) how many passes and their median and mean CPU in ms; then
the table `psreal profile` would make of it (psreal.profiler.arbiter_pass_costs: medians of the
bins with enough passes, gaps filled, made non-decreasing). A pass after a long sleep finds its
caches cold: docs/notes/calibration-log.md, "The arbiter's pass costs what its sleep left cold".
"""

from __future__ import annotations

import json
import sys

import numpy as np

from psreal.profiler import ARBITER_SLEEP_BINS_S, arbiter_pass_bins, arbiter_pass_costs


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for f in argv:
        log = json.loads(open(f).read())
        cpu = np.asarray([c for _, c in log], dtype=float) * 1e3
        print(
            f"== {f}: {len(log)} passes, {cpu.sum() / 1e3:.3f} CPU s, {cpu.mean():.3f} ms per pass"
        )
        lo = 0.0
        for hi, got in zip(ARBITER_SLEEP_BINS_S, arbiter_pass_bins(log), strict=True):
            if got:
                c = np.asarray(got) * 1e3
                top = "..." if hi == ARBITER_SLEEP_BINS_S[-1] else f"{hi * 1e3:.2f}"
                print(
                    f"  sleep {lo * 1e3:6.2f}-{top:>6} ms: {c.size:5d} passes, "
                    f"CPU p50 {np.median(c):.3f} mean {c.mean():.3f} ms"
                )
            lo = hi
        table = arbiter_pass_costs(log)
        print("  profile table (ms):", " ".join(f"{c * 1e3:.3f}" for _, c in table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
