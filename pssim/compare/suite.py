"""The suite: one row per scenario (SUITE_COLUMNS) and the files over all of them, suite.json,
suite.csv, suite.md and the parity plot."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..results import dumps_json, write_atomic_text
from .metrics import SUITE_COLUMNS, SUITE_METRICS, suite_stats


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
    from .. import report
    from ..profile import host_id

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    stats = suite_stats(rows)
    parity = None
    if plots:
        from .. import plots as plotting

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
            "staleness_mean": "scenarios with real mean staleness 0 have no relative error: "
            "both_zero lists those where sim is 0 too (exact agreement), real_zero those where sim "
            "is not; both are left out of median/max",
            "spearman_rho_throughput": "Spearman rank correlation of simulated vs measured "
            "throughput (ties: average rank)",
            "noise_floor": "real throughput (max - min) / mean over repeated real runs; median and "
            "max over scenarios",
            "sim_spread": "simulated throughput (max - min) / mean over the simulator's runs; "
            "median and max over scenarios",
            "within_noise": "scenarios whose simulated throughput range (its runs) overlaps the "
            "measured one (real runs)",
        },
        "fidelity": stats,
        "scenarios": list(rows),
    }
    write_atomic_text(report_dir / "suite.json", dumps_json(doc))
    write_atomic_text(report_dir / "suite.csv", suite_csv(rows))
    md = report.suite_report_md(rows, stats, "parity.png" if parity else None)
    write_atomic_text(report_dir / "suite.md", md)
    return report_dir / "suite.md"
