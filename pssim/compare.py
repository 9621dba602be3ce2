"""`pssim compare`: run the simulator and the real backend on the same scenarios and measure the error.

For each scenario the command measures a device profile when none is cached (so the simulator
predicts with measured compute costs), runs the real backend as a subprocess (never imported
here: `import pssim.compare` must not pull torch), optionally repeats it to measure its
run-to-run noise (round by round over all scenarios, so each one's runs span the session),
runs the simulator (several times, see `pssim.run.run_sim`), and then compares the two
result folders.

The comparison is a pure function of two result folders (`compare_folders`): every numeric
summary metric flattened to a dotted name (`step_time_s.p50`) gets its simulated and measured
value and the relative error (sim - real) / real, written to `comparison.json` with plots and a
`report.md` for people. Over several scenarios `suite_stats` computes the fidelity figures of
DESIGN.md section 8 (median / max |relative error|, Spearman rho of throughput, whether the
simulator's best scenario is the real best) next to the real backend's noise floor, written as
`suite.md`, `suite.json`, `suite.csv` and a parity plot.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .results import dumps_json, write_atomic_text

if TYPE_CHECKING:
    from .scenario import Scenario

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
# Distributions compared by plots, not number by number.
NOT_METRIC_PREFIXES = ("staleness.histogram", "sim_runs")

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


# --------------------------------------------------------------------------- result folders
def read_summary(folder: str | Path) -> dict[str, Any]:
    import json

    return json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))


def read_scenario_data(folder: str | Path) -> dict[str, Any]:
    """The resolved scenario a backend ran (its scenario.yaml) as plain data."""
    from .scenario import read_yaml

    data = read_yaml(Path(folder) / "scenario.yaml")
    return data if isinstance(data, dict) else {}


def _rel(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive on Windows
        return str(path)


def compare_folders(
    sim_dir: str | Path,
    real_dir: str | Path,
    out_dir: str | Path,
    real_repeat_dirs: Sequence[str | Path] = (),
    plots: bool = True,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Compare two result folders: write comparison.json, plots/ and report.md into out_dir.

    Everything is read from the folders (summary.json, steps.csv, scenario.yaml), so any two
    result folders can be compared: sim vs real, or two simulator variants. `real_repeat_dirs`
    are further runs of the `real_dir` backend, used for the run-to-run spread. Returns the
    comparison (what comparison.json holds).
    """
    from . import report

    sim_dir, real_dir, out_dir = Path(sim_dir), Path(real_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sim, real = read_summary(sim_dir), read_summary(real_dir)
    repeats = [read_summary(d) for d in real_repeat_dirs]
    scn = read_scenario_data(sim_dir)
    cmp = compare_summaries(sim, real, [real, *repeats] if repeats else ())
    comparison: dict[str, Any] = {
        "scenario": sim.get("scenario", scn.get("name", "")),
        "description": scn.get("description", ""),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "definitions": {
            "rel_error": "(sim - real) / real; null when real is 0 or missing",
            "real": "the measured value: the median over the real runs when there are several",
            "abs_error": "sim - real, in the metric's unit",
            "real_spread": "over all real runs (first + repeats): min, max, mean, std, rel_spread = (max - min) / mean",
            "sim.runs": "with several simulator runs (they differ only in the compute's natural variation): "
            "the simulated values are the median run's, the throughput range is over all runs",
            "within_noise": "the simulated throughput range (over its runs) and the measured one (over the real runs) overlap",
        },
        "sim": {
            "folder": _rel(sim_dir, out_dir),
            "backend": sim.get("backend"),
            "compute_source": sim.get("compute_source"),
            "profile": sim.get("profile"),
            "profile_compute": _profile_compute(sim.get("profile")),
            "profile_self_check": profile_self_check(scn, sim.get("profile")),
            "runs": sim.get("sim_runs"),
        },
        "real": {
            "folder": _rel(real_dir, out_dir),
            "backend": real.get("backend"),
            "compute_source": real.get("compute_source"),
            "device": real.get("device"),
            "emulation": real.get("emulation"),
            "runs": 1 + len(repeats),
            "repeat_folders": [_rel(Path(d), out_dir) for d in real_repeat_dirs],
        },
        **cmp,
        "within_noise": within_noise(sim, cmp["metrics"].get("throughput_samples_per_s", {})),
        "notes": list(notes),
    }
    write_atomic_text(out_dir / "comparison.json", dumps_json(comparison))
    plot_files: dict[str, str] = {}
    if plots:
        from . import plots as plotting

        made = plotting.scenario_plots(sim_dir, real_dir, out_dir / "plots", sim, real, repeats)
        plot_files = {k: _rel(p, out_dir) for k, p in made.items()}
    write_atomic_text(out_dir / "report.md", report.scenario_report_md(comparison, scn, plot_files))
    return comparison


def _profile_compute(path: str | None) -> dict[str, Any] | None:
    """`pssim.profile.compute_spread` of the profile the simulator used (None without one, or
    when it can no longer be read)."""
    if not path:
        return None
    from pydantic import ValidationError

    from .profile import compute_spread, load_profile

    try:
        return compute_spread(load_profile(path))
    except (OSError, ValueError, ValidationError):
        return None


def profile_self_check(
    scn_data: dict[str, Any], path: str | None, draws: int = 3
) -> dict[str, Any] | None:
    """How well the simulator, given this profile, predicts the profile's own calibration runs
    (`pssim.profile.calibration_scenario` of the scenario: 1 worker, 1 shard, BSP, run for real
    by `psreal profile`): the median throughput over `draws` simulator runs of it (`sim`) and over
    the calibration runs (`real`, their number `runs`), `rel_error` = (sim - real) / real. The
    profile's figures are medians over those runs, so a large error here says the simulator does
    not reproduce even the runs it was measured from. None without a profile, or one that kept no
    run's throughput; a diagnostic, it never fails the comparison."""
    if not path:
        return None
    from pydantic import ValidationError

    from .costs import build_costs
    from .profile import calibration_scenario, load_profile
    from .records import summarize
    from .scenario import scenario_from_dict
    from .sim import simulate

    try:
        runs = load_profile(path).samples.get("in_situ", {}).get("runs", [])
        real = [
            float(r["samples"]["throughput_samples_per_s"])
            for r in runs
            if isinstance(r, dict)
            and isinstance(r.get("samples"), dict)
            and isinstance(r["samples"].get("throughput_samples_per_s"), (int, float))
        ]
        if not real:
            return None
        data = {
            **scn_data,
            "compute": {**scn_data.get("compute", {}), "step_time_s": None, "profile": str(path)},
        }
        scn = scenario_from_dict(data, "<compared>")
        costs, cal = build_costs(scn, view="here"), calibration_scenario(scn)
        sims = [
            summarize(cal, *simulate(cal, costs, draw=k))["throughput_samples_per_s"]
            for k in range(draws)
        ]
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None
    sim, meas = float(np.median(sims)), float(np.median(real))
    return {
        "sim": sim,
        "real": meas,
        "rel_error": (sim - meas) / meas if meas else None,
        "runs": len(real),
    }


# -------------------------------------------------------------------------------- the suite
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


def suite_row(comparison: dict[str, Any], report_path: str = "") -> dict[str, Any]:
    """One suite row (SUITE_COLUMNS) from a scenario's comparison."""
    m = comparison["metrics"]
    row: dict[str, Any] = {"scenario": comparison["scenario"], "status": "ok"}
    for prefix, name in SUITE_METRICS.items():
        e = m.get(name, {})
        row[f"{prefix}_sim"] = e.get("sim")
        row[f"{prefix}_real"] = e.get("real")
        row[f"{prefix}_rel_error"] = e.get("rel_error")
    row["real_runs"] = comparison["real"]["runs"]
    spread = m.get("throughput_samples_per_s", {}).get("real_spread")
    row["real_throughput_spread"] = spread["rel_spread"] if spread else None
    row["real_throughput_min"], row["real_throughput_max"] = (
        (spread["min"], spread["max"]) if spread else (None, None)
    )
    reps = comparison["sim"].get("runs")
    row["sim_runs"] = reps["n"] if reps else 1
    row["sim_throughput_spread"] = reps["rel_spread"] if reps and reps["n"] > 1 else None
    row["sim_throughput_min"], row["sim_throughput_max"] = (
        (reps["throughput_min"], reps["throughput_max"]) if reps and reps["n"] > 1 else (None, None)
    )
    row["within_noise"] = comparison.get("within_noise")
    pc = comparison["sim"].get("profile_compute") or {}
    row["profile_compute_s"], row["profile_compute_runs"] = pc.get("compute_s"), pc.get("runs")
    row["profile_compute_spread"] = pc.get("rel_spread")
    row["profile_self_check_error"] = (comparison["sim"].get("profile_self_check") or {}).get(
        "rel_error"
    )
    row["compute_source"] = comparison["sim"].get("compute_source")
    row["report"] = report_path
    row["error"] = ""
    return row


def failed_row(name: str, error: str, report_path: str = "") -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SUITE_COLUMNS)
    row.update(scenario=name, status="failed", report=report_path, error=error)
    return row


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


def suite_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=list(SUITE_COLUMNS), lineterminator="\n", extrasaction="ignore"
    )
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in SUITE_COLUMNS})
    return buf.getvalue()


def write_suite(report_dir: str | Path, rows: Sequence[dict[str, Any]], plots: bool = True) -> Path:
    """suite.json, suite.csv, suite.md (+ parity.png) in report_dir; returns suite.md's path.

    Each row's `report` is a path to its scenario report, relative to report_dir.
    """
    from . import report
    from .profile import host_id

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    stats = suite_stats(rows)
    parity = None
    if plots:
        from . import plots as plotting

        pts = [
            r
            for r in rows
            if r.get("status") == "ok" and r.get("throughput_sim") and r.get("throughput_real")
        ]
        if pts:

            def rng(r: dict[str, Any], side: str) -> tuple[float, float] | None:
                lo, hi = r.get(f"{side}_throughput_min"), r.get(f"{side}_throughput_max")
                return (lo, hi) if lo is not None and hi is not None else None

            parity = plotting.parity_plot(
                [r["scenario"] for r in pts],
                [r["throughput_real"] for r in pts],
                [r["throughput_sim"] for r in pts],
                report_dir / "parity.png",
                [rng(r, "real") for r in pts],
                [rng(r, "sim") for r in pts],
            )
    doc = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_id(),
        "definitions": {
            "rel_error": "(sim - real) / real",
            "staleness_mean": "scenarios with real mean staleness 0 have no relative error: both_zero lists those where "
            "sim is 0 too (exact agreement), real_zero those where sim is not; both are left out of median/max",
            "spearman_rho_throughput": "Spearman rank correlation of simulated vs measured throughput (ties: average rank)",
            "noise_floor": "real throughput (max - min) / mean over repeated real runs; median and max over scenarios",
            "sim_spread": "simulated throughput (max - min) / mean over the simulator's runs; median and max over scenarios",
            "within_noise": "scenarios whose simulated throughput range (its runs) overlaps the measured one (real runs)",
        },
        "fidelity": stats,
        "scenarios": list(rows),
    }
    write_atomic_text(report_dir / "suite.json", dumps_json(doc))
    write_atomic_text(report_dir / "suite.csv", suite_csv(rows))
    md = report.suite_report_md(rows, stats, "parity.png" if parity else None)
    write_atomic_text(report_dir / "suite.md", md)
    return report_dir / "suite.md"


# ----------------------------------------------------------------------- running backends
@dataclass
class BackendRun:
    ok: bool
    rc: int
    lines: list[str] = field(default_factory=list)  # stderr lines (failure cause, warnings)
    seconds: float = 0.0


def _sets(overrides: Sequence[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def _psreal(args: list[str]) -> BackendRun:
    """Run `python -m psreal.cli ...` as a subprocess (torch is never imported into pssim)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "psreal.cli", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode == 130:
        raise KeyboardInterrupt
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return BackendRun(proc.returncode == 0, proc.returncode, lines, time.perf_counter() - t0)


def run_real(file: str, overrides: Sequence[str], out: str | Path) -> BackendRun:
    """`psreal run FILE --out OUT --quiet --set ...`: writes OUT/<name>/real/."""
    return _psreal(["run", str(file), "--out", str(out), "--quiet", *_sets(overrides)])


def run_profile(file: str, overrides: Sequence[str], more: bool = False) -> BackendRun:
    """`psreal profile FILE --quiet --set ...`: writes the profile into the per-host cache; with
    `more`, adds calibration runs to the profile there (`psreal profile --more`)."""
    return _psreal(
        ["profile", str(file), "--quiet", *(["--more"] if more else []), *_sets(overrides)]
    )


def needs_profile(scn: Scenario, reprofile: bool = False) -> bool:
    """Whether the simulator would use a measured profile that is not cached yet (or --reprofile)."""
    from .profile import find_profile

    if scn.compute.step_time_s is not None or scn.compute.profile != "auto":
        return False
    return reprofile or find_profile(scn)[0] is None


class Progress:
    """One line per scenario and backend on a terminal (rich); silent otherwise."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self._console = None
        if self.enabled:
            from rich.console import Console

            self._console = Console()

    def line(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, highlight=False)

    def status(self, text: str):  # noqa: ANN201 - a context manager
        import contextlib

        if self._console is None:
            return contextlib.nullcontext()
        return self._console.status(text)


def _err(lines: Iterable[str]) -> None:
    for ln in lines:
        print(ln, file=sys.stderr)


def _bad(file: str, msg: str) -> int:
    print(f"error: {file}: {msg}", file=sys.stderr)
    return 2


def compare_main(scns: list[Scenario], args: argparse.Namespace) -> int:
    """`pssim compare FILE...` (see the module docstring). Exit 0, 1 if any backend failed, 2 bad input."""
    from .cli import load_all

    files: list[str] = list(args.files)
    overrides = list(args.overrides)
    if args.repeats < 1:
        return _bad("--repeats", f"must be >= 1 (got {args.repeats})")
    if args.sim_runs < 1:
        return _bad("--sim-runs", f"must be >= 1 (got {args.sim_runs})")
    if args.device:
        overrides.append(f"cluster.workers.device={args.device}")
        scns = load_all(
            files, overrides
        )  # validated again with the device set (exit 2 if that is wrong)
    seen: dict[str, str] = {}
    for f, s in zip(files, scns, strict=True):
        if s.name in seen:
            return _bad(
                f,
                f"name: {s.name!r} is also the name of {seen[s.name]} (their results would overwrite each other)",
            )
        seen[s.name] = f

    out = Path(args.out)
    progress = Progress()
    rows: list[dict[str, Any]] = []
    reports: list[Path] = []
    failed = False
    measured = (
        [_reuse_real(f, s, out) for f, s in zip(files, scns, strict=True)]
        if args.reuse_real
        else measure_all(files, scns, overrides, out, args, progress)
    )
    for i, (file, scn) in enumerate(zip(files, scns, strict=True)):
        tag = f"[{i + 1}/{len(scns)}] {scn.name}"
        row, report_path, ok = _compare_one(file, scn, out, args, progress, tag, measured[i])
        failed |= not ok
        rows.append(row)
        reports.append(report_path)

    if len(scns) > 1 or args.report_dir:
        report_dir = Path(args.report_dir or args.out)
        if args.report_dir and report_dir.resolve() != out.resolve():
            # a report folder is meant to be kept (committed): give it each scenario's report,
            # comparison and plots, so its links do not point into the results folder
            reports = [_keep_scenario_report(p, report_dir) if p.exists() else p for p in reports]
        for r, p in zip(rows, reports, strict=True):
            r["report"] = _rel(p, report_dir) if p.exists() else ""
        suite = write_suite(report_dir, rows)
        for p in reports:
            if p.exists():
                print(f"scenario report: {p}")
        print(f"report: {suite}")
    elif reports[0].exists():
        print(f"report: {reports[0]}")
    return 1 if failed else 0


def _keep_scenario_report(report_path: Path, report_dir: Path) -> Path:
    """Copy a scenario's report.md, comparison.json and plots/ into report_dir/<scenario>/."""
    src = report_path.parent
    dst = report_dir / src.name
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "comparison.json"):
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)
    if (src / "plots").is_dir():
        shutil.copytree(src / "plots", dst / "plots", dirs_exist_ok=True)
    return dst / "report.md"


@dataclass
class Measured:
    """A scenario's real runs (made now, or kept from an earlier compare): the first, the repeat
    folders, notes and problems."""

    first: BackendRun
    repeat_dirs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    profiled: bool = False  # this compare measured the scenario's profile


def _reuse_real(file: str, scn: Scenario, out: Path) -> Measured:
    """`--reuse-real`: the real runs an earlier compare left in OUT/<scenario> (and the cached profile)."""
    folder = out / scn.name
    if not (folder / "real" / "summary.json").exists():
        msg = f"--reuse-real: no real run in {folder / 'real'} (run pssim compare without it first)"
        print(f"error: {file}: {scn.name}: {msg}", file=sys.stderr)
        return Measured(BackendRun(False, 2, [msg]))
    repeat_dirs = sorted(d for d in folder.glob("real-repeat-*") if (d / "summary.json").exists())
    notes = [f"real runs reused from an earlier compare ({1 + len(repeat_dirs)})"]
    if needs_profile(scn):
        notes.append("no cached profile for this host: the simulator used the catalog's roofline")
        print(
            f"warning: {file}: {scn.name}: no cached profile for this host; the simulator uses the catalog's roofline",
            file=sys.stderr,
        )
    return Measured(BackendRun(True, 0), repeat_dirs, notes)


def _measure_first(
    file: str,
    scn: Scenario,
    overrides: list[str],
    out: Path,
    args: argparse.Namespace,
    progress: Progress,
    tag: str,
) -> Measured:
    """Profile the device if needed, then the first real run."""
    folder = out / scn.name
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("real-repeat-*"):
        shutil.rmtree(stale, ignore_errors=True)
    notes: list[str] = []
    problems: list[str] = []
    profiled = False
    if needs_profile(scn, args.reprofile):
        with progress.status(f"{tag}: profiling the device"):
            res = run_profile(file, overrides)
        profiled = res.ok
        if res.ok:
            progress.line(f"{tag}: profile measured ({res.seconds:.1f} s)")
        else:
            problems.append(f"profiling failed (exit {res.rc})")
            print(
                f"error: {file}: {scn.name}: profiling failed (exit {res.rc}); the simulator falls back to the catalog roofline",
                file=sys.stderr,
            )
            _err(res.lines)
            notes.append("profiling failed: " + " | ".join(res.lines[-3:]))

    with progress.status(f"{tag}: real backend"):
        first = run_real(file, overrides, out)
    if not first.ok:
        print(f"error: {file}: {scn.name}: real backend failed (exit {first.rc})", file=sys.stderr)
        _err(first.lines)
        progress.line(f"{tag}: real  FAILED (exit {first.rc})")
    else:
        warnings = [ln for ln in first.lines if ln.startswith("warning")]
        _err(warnings)
        notes.extend(f"real backend: {ln}" for ln in warnings)  # e.g. cuda asked for, ran on cpu
        progress.line(f"{tag}: real  done ({first.seconds:.1f} s)")
    return Measured(first, [], notes, problems, profiled)


def _measure_repeat(
    file: str,
    scn: Scenario,
    overrides: list[str],
    out: Path,
    k: int,
    n: int,
    m: Measured,
    progress: Progress,
    tag: str,
) -> None:
    """Real run number k + 1 of a scenario whose first run succeeded, into real-repeat-k/."""
    folder = out / scn.name
    tmp = folder / f".repeat-{k}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with progress.status(f"{tag}: real backend, repeat {k}/{n - 1}"):
        res = run_real(file, overrides, tmp)
    if res.ok:
        dest = folder / f"real-repeat-{k}"
        os.replace(tmp / scn.name / "real", dest)
        m.repeat_dirs.append(dest)
        progress.line(f"{tag}: real  repeat {k} done ({res.seconds:.1f} s)")
    else:
        m.problems.append(f"real repeat {k} failed (exit {res.rc})")
        print(
            f"error: {file}: {scn.name}: real backend repeat {k} failed (exit {res.rc})",
            file=sys.stderr,
        )
        _err(res.lines)
    shutil.rmtree(tmp, ignore_errors=True)


def measure_all(
    files: Sequence[str],
    scns: Sequence[Scenario],
    overrides: list[str],
    out: Path,
    args: argparse.Namespace,
    progress: Progress,
) -> list[Measured]:
    """Every scenario's real runs, round by round: first each scenario's profile (when none is
    cached) and first run, then one repeat of each scenario per further round. A scenario's runs
    are thus spread over the whole session, so the host's drift (other tenants of a shared machine
    come and go over minutes) shows in each scenario's spread, and its median is not one quiet or
    one busy moment. Each further round also adds calibration runs to every profile this compare
    measured (`psreal profile --more`, once per profile), so that the simulator's costs are
    medians over the same span."""
    from .profile import profile_key

    n = len(scns)
    done = [
        _measure_first(f, s, overrides, out, args, progress, f"[{i + 1}/{n}] {s.name}")
        for i, (f, s) in enumerate(zip(files, scns, strict=True))
    ]
    refine: dict[str, tuple[str, Scenario]] = {}  # one scenario per profile this compare measured
    for f, s, m in zip(files, scns, done, strict=True):
        if m.profiled:
            refine.setdefault(dumps_json(profile_key(s)), (f, s))
    for k in range(1, args.repeats):
        for f, s in refine.values():
            with progress.status(
                f"{s.name}: more calibration runs for its profile (round {k + 1})"
            ):
                res = run_profile(f, overrides, more=True)
            if res.ok:
                progress.line(f"{s.name}: profile refined, round {k + 1} ({res.seconds:.1f} s)")
            else:  # the profile measured before stays as it was
                print(
                    f"warning: {f}: {s.name}: adding calibration runs to its profile failed (exit {res.rc}); "
                    "the profile keeps its earlier runs",
                    file=sys.stderr,
                )
                _err(res.lines)
        for i, (f, s) in enumerate(zip(files, scns, strict=True)):
            if done[i].first.ok:
                _measure_repeat(
                    f,
                    s,
                    overrides,
                    out,
                    k,
                    args.repeats,
                    done[i],
                    progress,
                    f"[{i + 1}/{n}] {s.name}",
                )
    return done


def _compare_one(
    file: str,
    scn: Scenario,
    out: Path,
    args: argparse.Namespace,
    progress: Progress,
    tag: str,
    measured: Measured,
) -> tuple[dict[str, Any], Path, bool]:
    """Simulation and comparison of one scenario against its real runs: (suite row, report.md, ok)."""
    from . import report
    from .run import run_sim

    folder = out / scn.name
    report_path = folder / "report.md"
    folder.mkdir(parents=True, exist_ok=True)
    first, repeat_dirs, notes, problems = (
        measured.first,
        measured.repeat_dirs,
        measured.notes,
        measured.problems,
    )

    sim_ok = True
    with progress.status(f"{tag}: simulator"):
        try:
            t0 = time.perf_counter()
            run_sim(scn, out, runs=args.sim_runs, view="here")
            progress.line(f"{tag}: sim   done ({time.perf_counter() - t0:.1f} s)")
        except Exception as exc:  # a simulator bug must not lose the other scenarios' results
            sim_ok = False
            print(
                f"error: {file}: {scn.name}: simulator failed: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )

    if not first.ok or not sim_ok:
        (folder / "comparison.json").unlink(
            missing_ok=True
        )  # never leave a comparison of stale results
        cause = first.lines if not first.ok else ["the simulator failed"]
        write_atomic_text(
            report_path,
            report.failed_report_md(scn, file, cause, first.rc if not first.ok else None),
        )
        return failed_row(scn.name, " | ".join(cause[-3:])), report_path, False

    with progress.status(f"{tag}: comparing"):
        cmp = compare_folders(folder / "sim", folder / "real", folder, repeat_dirs, notes=notes)
    row = suite_row(cmp)
    if problems:
        row["error"] = "; ".join(problems)
    e = row["throughput_rel_error"]
    progress.line(
        f"{tag}: throughput error {report.fmt_pct(e)}"
        + (
            f" (real spread {report.fmt_pct(row['real_throughput_spread'], signed=False)})"
            if row["real_throughput_spread"] is not None
            else ""
        )
    )
    return row, report_path, not problems
