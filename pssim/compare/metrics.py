"""The numbers of a comparison: every summary metric flattened to a dotted name, its relative
error (sim - real) / real and run-to-run spread, and the fidelity figures over a suite of
scenarios (DESIGN.md section 8: median / max |relative error|, Spearman rho of throughput, the
best pick, the real backend's noise floor). Pure computation, no files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

# Summary keys that describe the configuration or the run itself rather than predict something:
# left out of the metric comparison (the simulator's wall time is how long simulating took).
NOT_METRICS = frozenset(
    {
        "workers",
        "servers",
        "pipeline_stages",
        "microbatches",
        "wall_time_s",
        "simulated_time_s",
        "events",
    }
)
# Distributions compared by plots, not number by number; what the simulation's host model was
# made of (its inputs, not a prediction).
NOT_METRIC_PREFIXES = ("staleness.histogram", "sim_runs", "host_model")

# The fidelity figures of DESIGN.md section 8: suite column prefix -> flattened metric name.
SUITE_METRICS = {
    "throughput": "throughput_samples_per_s",
    "step_time_p50": "step_time_s.p50",
    "step_time_p95": "step_time_s.p95",
    "staleness_mean": "staleness.mean",
}
SUITE_COLUMNS = (
    "scenario",
    "status",
    *(f"{p}_{s}" for p in SUITE_METRICS for s in ("sim", "real", "rel_error")),
    "real_runs",
    "real_throughput_spread",
    "real_throughput_min",
    "real_throughput_max",
    "sim_runs",
    "sim_throughput_spread",
    "sim_throughput_min",
    "sim_throughput_max",
    "within_noise",
    "profile_compute_s",
    "profile_compute_runs",
    "profile_compute_spread",
    "profile_self_check_error",
    "compute_source",
    "report",
    "error",
)


# ------------------------------------------------------------------------------ metric math
def flatten_metrics(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric metrics of a summary as {dotted name: value}.

    Nested dicts become dotted names (`utilization.device`); booleans, strings, nulls (NaN in the
    run), configuration echoes (`workers`, ...) and histograms are left out.
    """
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if name in NOT_METRICS or name.startswith(NOT_METRIC_PREFIXES):
            continue
        if isinstance(value, dict):
            out.update(flatten_metrics(value, f"{name}."))
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            out[name] = float(value)
    return out


def relative_error(sim: float | None, real: float | None) -> float | None:
    """(sim - real) / real; None when either is missing or not finite, or when real is 0."""
    if sim is None or real is None or not (math.isfinite(sim) and math.isfinite(real)) or real == 0:
        return None
    return (sim - real) / real


def run_spread(values: Sequence[float]) -> dict[str, Any] | None:
    """Run-to-run spread of one metric over repeated real runs; None with fewer than two runs.

    `rel_spread` = (max - min) / mean, None when the mean is 0.
    """
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if len(v) < 2:
        return None
    mean = float(np.mean(v))
    return {
        "runs": len(v),
        "min": min(v),
        "max": max(v),
        "mean": mean,
        "std": float(np.std(v, ddof=1)),
        "rel_spread": (max(v) - min(v)) / mean if mean != 0 else None,
    }


def compare_summaries(
    sim: dict[str, Any], real: dict[str, Any], real_runs: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Metric-by-metric comparison of two summaries.

    `real_runs` are the summaries of every real run (the first one included); with two or more,
    the measured value of each metric is its median over the runs (one run is one draw of the
    host's noise) and the metric also gets the real backend's run-to-run spread. Metrics present
    in one summary only are listed by name in `only_sim` / `only_real`.
    """
    fs, fr = flatten_metrics(sim), flatten_metrics(real)
    runs = [flatten_metrics(r) for r in real_runs]
    metrics: dict[str, dict[str, Any]] = {}
    for name, s in fs.items():
        if name not in fr:
            continue
        values = [x[name] for x in runs if name in x]
        r = float(np.median(values)) if len(values) >= 2 else fr[name]
        entry: dict[str, Any] = {
            "sim": s,
            "real": r,
            "abs_error": s - r,
            "rel_error": relative_error(s, r),
        }
        spread = run_spread([x[name] for x in runs if name in x])
        if spread is not None:
            entry["real_spread"] = spread
        metrics[name] = entry
    return {
        "metrics": metrics,
        "only_sim": sorted(set(fs) - set(fr)),
        "only_real": sorted(set(fr) - set(fs)),
    }


def within_noise(sim: dict[str, Any], thr: dict[str, Any]) -> bool | None:
    """Whether the simulated throughput range (over the simulator's runs, or its one value) and
    the measured range (over the real runs, or the one run) overlap; None when neither side has a
    range (one simulator run, one real run: then only the error says anything)."""
    reps, spread = sim.get("sim_runs"), thr.get("real_spread")
    if thr.get("sim") is None or thr.get("real") is None or (not reps and not spread):
        return None
    lo_s, hi_s = (
        (reps["throughput_min"], reps["throughput_max"]) if reps else (thr["sim"], thr["sim"])
    )
    lo_r, hi_r = (spread["min"], spread["max"]) if spread else (thr["real"], thr["real"])
    return bool(lo_s <= hi_r and lo_r <= hi_s)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation: Pearson correlation of the ranks, ties given their average rank.

    None with fewer than two points or when either side is constant (all tied).
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} != {len(y)})")
    if len(x) < 2:
        return None
    rx = pd.Series(list(x), dtype=float).rank(method="average").to_numpy()
    ry = pd.Series(list(y), dtype=float).rank(method="average").to_numpy()
    dx, dy = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    if den == 0:
        return None
    return float((dx * dy).sum() / den)


def _abs_error_stats(pairs: Iterable[tuple[str, float]]) -> dict[str, Any]:
    pairs = list(pairs)
    if not pairs:
        return {"n": 0, "median_abs_rel_error": None, "max_abs_rel_error": None, "worst": None}
    a = np.abs([e for _, e in pairs])
    worst = pairs[int(np.argmax(a))][0]
    return {
        "n": len(pairs),
        "median_abs_rel_error": float(np.median(a)),
        "max_abs_rel_error": float(a.max()),
        "worst": worst,
    }


def suite_stats(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fidelity over a suite (DESIGN.md section 8) from suite rows; failed rows are left out.

    - per metric: n, median and max |relative error|, the worst scenario. A scenario whose real
      value is 0 has no relative error: for mean staleness (0 under BSP, or when nothing was
      stale) a scenario where sim and real are both 0 agrees exactly and is counted in
      `both_zero`, left out of median/max (0/0 is undefined, and counting it as 0 would flatter
      the simulator); one where real is 0 but sim is not is listed in `real_zero` with its
      simulated value (an unbounded relative error), also left out of median/max.
    - spearman_rho_throughput: rank agreement of simulated and measured throughput.
    - best_pick: the scenario with the highest simulated throughput (the first on ties), whether
      its measured throughput is the highest measured, and its measured throughput as a fraction
      of the best measured.
    - noise_floor: the real backend's run-to-run spread of throughput, (max - min) / mean over
      repeats, median and max over scenarios (None without --repeats >= 2).
    - sim_spread: the same over the simulator's runs (None with one run).
    - within_noise: how many scenarios have overlapping simulated and measured throughput
      ranges, and which do not (None when no scenario has a range on either side).
    - profile_self_check: median and max |relative error| of the simulator on each scenario's
      profile's own calibration runs (`profile_self_check`; None when no scenario has one).
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    out: dict[str, Any] = {
        "scenarios": len(rows),
        "ok": len(ok),
        "failed": [r["scenario"] for r in rows if r.get("status") != "ok"],
    }
    for prefix in SUITE_METRICS:
        pairs, both_zero, real_zero = [], [], []
        for r in ok:
            s, m, e = r.get(f"{prefix}_sim"), r.get(f"{prefix}_real"), r.get(f"{prefix}_rel_error")
            if s is None or m is None:
                continue
            if m == 0:
                if s == 0:
                    both_zero.append(r["scenario"])
                else:
                    real_zero.append({"scenario": r["scenario"], "sim": s})
            elif e is not None and math.isfinite(e):
                pairs.append((r["scenario"], float(e)))
        st = _abs_error_stats(pairs)
        st["both_zero"] = both_zero
        st["real_zero"] = real_zero
        out[prefix] = st
    thr = [
        r
        for r in ok
        if r.get("throughput_sim") is not None and r.get("throughput_real") is not None
    ]
    out["spearman_rho_throughput"] = spearman(
        [r["throughput_sim"] for r in thr], [r["throughput_real"] for r in thr]
    )
    out["best_pick"] = best_pick(
        [r["scenario"] for r in thr],
        [r["throughput_sim"] for r in thr],
        [r["throughput_real"] for r in thr],
    )
    spreads = [
        r["real_throughput_spread"] for r in ok if r.get("real_throughput_spread") is not None
    ]
    out["noise_floor"] = (
        {
            "n": len(spreads),
            "median_rel_spread": float(np.median(spreads)),
            "max_rel_spread": float(np.max(spreads)),
        }
        if spreads
        else None
    )
    sims = [r["sim_throughput_spread"] for r in ok if r.get("sim_throughput_spread") is not None]
    out["sim_spread"] = (
        {
            "n": len(sims),
            "median_rel_spread": float(np.median(sims)),
            "max_rel_spread": float(np.max(sims)),
        }
        if sims
        else None
    )
    checks = [
        (r["scenario"], float(r["profile_self_check_error"]))
        for r in ok
        if r.get("profile_self_check_error") is not None
    ]
    out["profile_self_check"] = _abs_error_stats(checks) if checks else None
    judged = [r for r in ok if r.get("within_noise") is not None]
    out["within_noise"] = (
        {
            "n": len(judged),
            "count": sum(bool(r["within_noise"]) for r in judged),
            "outside": [r["scenario"] for r in judged if not r["within_noise"]],
        }
        if judged
        else None
    )
    return out


def best_pick(
    names: Sequence[str], sim: Sequence[float], real: Sequence[float]
) -> dict[str, Any] | None:
    """Does the scenario the simulator ranks first (highest throughput) measure best too?"""
    if not names:
        return None
    i_sim = int(np.argmax(sim))
    best_real = max(real)
    real_best = [n for n, r in zip(names, real, strict=True) if r == best_real]
    return {
        "sim_best": names[i_sim],
        "real_best": real_best[0],
        "same": real[i_sim] == best_real,
        "real_of_sim_pick_over_real_best": real[i_sim] / best_real if best_real else None,
    }
