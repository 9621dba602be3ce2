"""Run one backend on a scenario and write its result files (shared by the CLIs, compare and sweep)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import summarize
from .results import write_results

if TYPE_CHECKING:
    from .costs import CostModel
    from .scenario import Scenario


def run_sim(scn: Scenario, out: str | Path, costs: CostModel | None = None, replicas: int = 1) -> tuple[Path, dict[str, Any]]:
    """Simulate `scn` and write OUT/<scenario>/sim/.

    With `replicas` > 1 the simulator runs that many replicas, which differ only in the compute's
    natural step-to-step variation (`pssim.draws.natural_factors`; replica 0 is the plain run),
    and writes the *median replica*: the one whose throughput is the median (the lower middle
    for an even count, the lowest replica index on ties). Its summary gets a `replicas` entry
    with every replica's throughput, so a run whose outcome hinges on chance (workers sharing a
    core falling into or out of step) shows how far chance moves it. Without measured compute
    samples there is no natural variation to draw: one run, `replicas.n` = 1.
    """
    from .costs import build_costs
    from .sim import simulate

    if replicas < 1:
        raise ValueError(f"replicas must be >= 1 (got {replicas})")
    costs = costs or build_costs(scn)
    n = replicas if costs.compute_samples_s else 1
    runs = []
    for r in range(n):
        rec, extra = simulate(scn, costs, replica=r)
        runs.append((summarize(scn, rec, extra), r, rec))
    order = sorted(runs, key=lambda x: (x[0]["throughput_samples_per_s"], x[1]))
    summary, pick, rec = order[(n - 1) // 2]
    if replicas > 1:
        thr = [s["throughput_samples_per_s"] for s, _, _ in runs]
        summary["replicas"] = {
            "asked": replicas,
            "n": n,
            "median_replica": pick,
            "throughput_samples_per_s": thr,
            "throughput_min": min(thr),
            "throughput_median": statistics.median(thr),
            "throughput_max": max(thr),
            "rel_spread": (max(thr) - min(thr)) / statistics.fmean(thr) if statistics.fmean(thr) else None,
            "varies": "the compute's natural step-to-step variation" if n > 1 else "nothing (no measured compute samples)",
        }
        summary["wall_time_s"] = sum(s["wall_time_s"] for s, _, _ in runs)
    return write_results(out, scn, "sim", rec, summary), summary
