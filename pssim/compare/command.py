"""`pssim compare FILE...`: per scenario, the real runs (`runner`), the simulator and the
comparison of the two (`folders`), then the suite report over all scenarios (`suite`)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..results import write_atomic_text
from .folders import _rel, compare_folders
from .runner import Measured, Progress, _reuse_real, measure_all
from .suite import failed_row, suite_row, write_suite

if TYPE_CHECKING:
    from ..scenario import Scenario


def _bad(file: str, msg: str) -> int:
    print(f"error: {file}: {msg}", file=sys.stderr)
    return 2


def compare_main(scns: list[Scenario], args: argparse.Namespace) -> int:
    """`pssim compare FILE...` (see the `pssim.compare` docstring). Exit 0, 1 if any backend
    failed, 2 bad input."""
    from ..scenario import load_all

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
                f"name: {s.name!r} is also the name of {seen[s.name]} "
                "(their results would overwrite each other)",
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


def _compare_one(
    file: str,
    scn: Scenario,
    out: Path,
    args: argparse.Namespace,
    progress: Progress,
    tag: str,
    measured: Measured,
) -> tuple[dict[str, Any], Path, bool]:
    """Simulation and comparison of one scenario against its real runs: (suite row, report.md,
    ok)."""
    from .. import report
    from ..run import run_sim

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
