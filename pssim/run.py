"""Run one backend on a scenario and write its result files (shared by the CLIs, compare and
sweep)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import summarize
from .results import write_results

if TYPE_CHECKING:
    from .costs import CostModel
    from .scenario import Scenario


def run_sim(
    scn: Scenario,
    out: str | Path,
    costs: CostModel | None = None,
    runs: int = 1,
    view: str = "target",
) -> tuple[Path, dict[str, Any]]:
    """Simulate `scn` and write OUT/<scenario>/sim/, in `view` (`pssim.costs.build_costs`: the
    target cluster, or "here", the run psreal makes on this machine) unless `costs` are given.

    With `runs` > 1 the simulator runs that many times, each with its own draw of the compute's
    natural step-to-step variation (`pssim.draws.natural_factors`; draw 0 is the plain run), and
    writes the *median run*: the one whose throughput is the median (the lower middle for an
    even count, the lowest draw on ties). Its summary gets a `sim_runs` entry with every run's
    throughput, so a scenario whose outcome hinges on chance (workers sharing a core falling into
    or out of step) shows how far chance moves it. Without measured compute samples there is no
    natural variation to draw: one run, `sim_runs.n` = 1.
    """
    from .costs import build_costs
    from .sim import simulate

    if runs < 1:
        raise ValueError(f"runs must be >= 1 (got {runs})")
    costs = costs or build_costs(scn, view=view)
    n = runs if costs.compute_samples_s else 1
    done = []
    for k in range(n):
        rec, extra = simulate(scn, costs, draw=k)
        done.append((summarize(scn, rec, extra), k, rec))
    summary, pick, rec = sorted(done, key=lambda x: (x[0]["throughput_samples_per_s"], x[1]))[
        (n - 1) // 2
    ]
    if runs > 1:
        thr = [s["throughput_samples_per_s"] for s, _, _ in done]
        mean = statistics.fmean(thr)
        summary["sim_runs"] = {
            "asked": runs,
            "n": n,
            "median_run": pick,
            "throughput_samples_per_s": thr,
            "throughput_min": min(thr),
            "throughput_median": statistics.median(thr),
            "throughput_max": max(thr),
            "rel_spread": (max(thr) - min(thr)) / mean if mean else None,
            "varies": "the compute's natural step-to-step variation"
            if n > 1
            else "nothing (no measured compute samples)",
        }
        summary["wall_time_s"] = sum(s["wall_time_s"] for s, _, _ in done)
    return write_results(out, scn, "sim", rec, summary), summary
