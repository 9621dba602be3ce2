"""`pssim compare`: run the simulator and the real backend on the same scenarios and measure the
error.

For each scenario the command measures a device profile when none is cached (so the simulator
predicts with measured compute costs), runs the real backend as a subprocess (never imported
here: `import pssim.compare` must not pull torch), optionally repeats it to measure its
run-to-run noise (round by round over all scenarios, so each one's runs span the session),
runs the simulator in the here view (psreal's run on this machine, with the host model of
`pssim.sim.host`; several times, see `pssim.run.run_sim`), and then compares the two result
folders.

The comparison is a pure function of two result folders (`compare_folders`): every numeric
summary metric flattened to a dotted name (`step_time_s.p50`) gets its simulated and measured
value and the relative error (sim - real) / real, written to `comparison.json` with plots and a
`report.md` for people. Over several scenarios `suite_stats` computes the fidelity figures of
DESIGN.md section 8 (median / max |relative error|, Spearman rho of throughput, whether the
simulator's best scenario is the real best) next to the real backend's noise floor, written as
`suite.md`, `suite.json`, `suite.csv` and a parity plot.

Modules: `metrics` (the numbers), `read` (a result folder's files as data), `folders` (two
result folders compared), `suite` (suite rows and files), `runner` (psreal as a subprocess, the
real runs), `command` (`compare_main`, the CLI command).
"""

from __future__ import annotations

from .command import compare_main
from .folders import compare_folders, profile_self_check
from .metrics import (
    NOT_METRIC_PREFIXES,
    NOT_METRICS,
    SUITE_COLUMNS,
    SUITE_METRICS,
    best_pick,
    compare_summaries,
    flatten_metrics,
    relative_error,
    run_spread,
    spearman,
    suite_stats,
    within_noise,
)
from .read import read_scenario_data, read_summary
from .runner import (
    BackendRun,
    Measured,
    Progress,
    measure_all,
    needs_profile,
    run_profile,
    run_real,
)
from .suite import failed_row, suite_csv, suite_row, write_suite

__all__ = [
    "NOT_METRICS",
    "NOT_METRIC_PREFIXES",
    "SUITE_COLUMNS",
    "SUITE_METRICS",
    "BackendRun",
    "Measured",
    "Progress",
    "best_pick",
    "compare_folders",
    "compare_main",
    "compare_summaries",
    "failed_row",
    "flatten_metrics",
    "measure_all",
    "needs_profile",
    "profile_self_check",
    "read_scenario_data",
    "read_summary",
    "relative_error",
    "run_profile",
    "run_real",
    "run_spread",
    "spearman",
    "suite_csv",
    "suite_row",
    "suite_stats",
    "within_noise",
    "write_suite",
]
