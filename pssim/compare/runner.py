"""Running the real backend: psreal (`run`, `profile`) as a subprocess, never imported here, so
that `import pssim.compare` does not pull torch; the real runs of every scenario, round by round
(`measure_all`), or those an earlier compare kept (`--reuse-real`); progress lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..results import dumps_json

if TYPE_CHECKING:
    from ..scenario import Scenario


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
    """Whether the simulator would use a measured profile that is not cached yet (or
    --reprofile)."""
    from ..profile import find_profile

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
    """`--reuse-real`: the real runs an earlier compare left in OUT/<scenario> (and the cached
    profile)."""
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
            f"warning: {file}: {scn.name}: no cached profile for this host; "
            "the simulator uses the catalog's roofline",
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
                f"error: {file}: {scn.name}: profiling failed (exit {res.rc}); "
                "the simulator falls back to the catalog roofline",
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
    from ..profile import profile_key

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
                    f"warning: {f}: {s.name}: adding calibration runs to its profile failed "
                    f"(exit {res.rc}); the profile keeps its earlier runs",
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
