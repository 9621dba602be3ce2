"""`compare_folders`: any two result folders (sim vs real, or two simulator variants) compared
metric by metric into comparison.json, plots and report.md, with the diagnostics of the
profile the simulator used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..results import dumps_json, write_atomic_text
from .metrics import compare_summaries, within_noise
from .read import read_scenario_data, read_summary


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
    from .. import report

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
            "real_spread": "over all real runs (first + repeats): min, max, mean, std, "
            "rel_spread = (max - min) / mean",
            "sim.runs": "with several simulator runs (they differ only in the compute's natural "
            "variation): the simulated values are the median run's, the throughput range is over "
            "all runs",
            "within_noise": "the simulated throughput range (over its runs) and the measured one "
            "(over the real runs) overlap",
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
        from .. import plots as plotting

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

    from ..profile import compute_spread, load_profile

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

    from ..costs import build_costs
    from ..profile import calibration_scenario, load_profile
    from ..records import summarize
    from ..scenario import scenario_from_dict
    from ..sim import simulate

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
