"""`pssim sweep`: run a grid of variants of one scenario with the simulator, the real backend or
both.

`--grid a.b=v1,v2` names a field by its dotted path and its values (read as YAML, like `--set`;
commas inside brackets or quotes do not split, so `model.hidden=[256,256],[512]` is two values).
The variants are the cartesian product of all grids, each applied as overrides on top of the
file and its `--set`s and validated like them: a bad value stops the sweep with exit code 2,
naming the field, before anything runs. Each variant is named `<name>-<field>-<value>...`
(sanitised to [a-z0-9_-]; the field is the shortest dotted suffix that tells the grid fields
apart) and writes its own result folders `OUT/<name>-sweep/<variant>/<backend>/`.

Simulator variants run in parallel with `--jobs N` (processes); real runs go one at a time, as
each needs the whole machine, and all of them before any simulation so that the simulator never
competes with a measurement. Alone, the simulator predicts the target cluster; with
`--backend both` it predicts psreal's run on this machine (the here view, as `pssim compare`
does), and a variant also gets a device profile (when none is cached) and a comparison.json +
report.md. The sweep writes
`sweep.csv` (one row per variant: grid values, headline metrics per backend) and `sweep.md`, and
prints the table.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import write_atomic_text
from .scenario import Problem, Scenario, ScenarioError, load_scenario

NAME_MAX = 100  # the scenario name's limit (pssim.scenario.Scenario.name)
# (summary metric, csv column suffix): the headline metrics of a sweep row, per backend
ROW_METRICS = (
    ("throughput_samples_per_s", "throughput_samples_per_s"),
    ("step_time_s.p50", "step_time_p50_s"),
    ("step_time_s.p95", "step_time_p95_s"),
    ("staleness.mean", "staleness_mean"),
    ("compute_time_s.mean", "compute_time_s"),
    ("comm_time_s.mean", "comm_time_s"),
    ("wait_time_s.mean", "wait_time_s"),
)


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its name, its (field, value text) pairs and the overrides that make
    it."""

    name: str
    values: tuple[tuple[str, str], ...]

    @property
    def overrides(self) -> list[str]:
        return [f"{f}={v}" for f, v in self.values] + [f"name='{self.name}'"]


def split_values(text: str) -> list[str]:
    """Split a grid's value list at the commas outside brackets, braces and quotes."""
    out, cur, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`a.b=v1,v2` items -> [(field, [value text, ...])]. Raises ScenarioError('--grid') listing
    every problem."""
    grid: list[tuple[str, list[str]]] = []
    problems: list[Problem] = []
    for item in items:
        if "=" not in item:
            problems.append(Problem("", f"expected field.path=v1,v2,... (got {item!r})"))
            continue
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key or not all(seg.strip() for seg in key.split(".")):
            problems.append(
                Problem("", f"empty field name in {item!r} (expected field.path=v1,v2,...)")
            )
            continue
        key = ".".join(seg.strip() for seg in key.split("."))
        if key == "name":
            problems.append(
                Problem(key, "cannot be swept: each variant is named after its grid values")
            )
            continue
        if any(key == f for f, _ in grid):
            problems.append(Problem(key, "given in two --grid options; list all its values in one"))
            continue
        values = split_values(raw)
        if any(v == "" for v in values):
            problems.append(Problem(key, f"empty value in {raw!r} (expected v1,v2,...)"))
            continue
        if len(set(values)) != len(values):
            problems.append(Problem(key, f"a value is listed twice in {raw!r}"))
            continue
        grid.append((key, values))
    if problems:
        raise ScenarioError("--grid", problems)
    return grid


def sanitize(text: str) -> str:
    """Lower case, every run of characters outside [a-z0-9_-] replaced by '_'."""
    s = re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_")
    return s or "x"


def field_labels(fields: Sequence[str]) -> dict[str, str]:
    """Each field's shortest dotted suffix that no other field shares, sanitised
    (`workers_count`)."""
    out = {}
    for f in fields:
        segs = f.split(".")
        for n in range(1, len(segs) + 1):
            suffix = segs[-n:]
            if not any(g != f and g.split(".")[-n:] == suffix for g in fields):
                break
        out[f] = sanitize("_".join(suffix))
    return out


def make_variants(base: str, grid: Sequence[tuple[str, Sequence[str]]]) -> list[Variant]:
    """The cartesian product of the grid as named variants (names unique and valid scenario
    names)."""
    labels = field_labels([f for f, _ in grid])
    variants, used = [], set()
    for combo in itertools.product(*(vals for _, vals in grid)):
        pairs = tuple((f, v) for (f, _), v in zip(grid, combo, strict=True))
        name = "-".join([base, *(f"{labels[f]}-{sanitize(v)}" for f, v in pairs)])
        if len(name) > NAME_MAX:
            digest = hashlib.sha1(name.encode()).hexdigest()[:8]
            name = f"{name[: NAME_MAX - 9]}-{digest}"
        unique, k = name, 2
        while unique in used:
            unique = f"{name[: NAME_MAX - 1 - len(str(k))]}-{k}"
            k += 1
        used.add(unique)
        variants.append(Variant(unique, pairs))
    return variants


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def validate_variants(
    file: str, overrides: Sequence[str], variants: Sequence[Variant]
) -> list[Scenario]:
    """Load every variant; raise one ScenarioError with every distinct problem (grid ones
    marked)."""
    scns, problems = [], []
    fields = {f for v in variants for f, _ in v.values}
    for v in variants:
        try:
            scns.append(load_scenario(file, [*overrides, *v.overrides]))
        except ScenarioError as exc:
            for p in exc.problems:
                if any(_under(p.path, f) for f in fields):
                    p = Problem(p.path, p.message.replace("(from --set)", "(from --grid)"))
                if p not in problems:
                    problems.append(p)
    if problems:
        raise ScenarioError(file, problems)
    return scns


def _sim_variant(file: str, overrides: list[str], out: str, view: str) -> dict[str, Any]:
    """Worker-process body: load and simulate one variant in `view`, return its summary."""
    from .run import run_sim

    return run_sim(load_scenario(file, overrides), out, view=view)[1]


def _metric(summary: dict[str, Any] | None, dotted: str) -> float | None:
    x: Any = summary
    for k in dotted.split("."):
        if not isinstance(x, dict):
            return None
        x = x.get(k)
    return x if isinstance(x, int | float) and not isinstance(x, bool) else None


def sweep_rows(
    variants: Sequence[Variant],
    backends: Sequence[str],
    summaries: dict[tuple[str, str], dict[str, Any]],
    errors: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """One row per variant: grid values, then each backend's headline metrics (and sim's
    throughput error)."""
    from .compare import relative_error

    rows = []
    for v in variants:
        row: dict[str, Any] = {"variant": v.name, **dict(v.values)}
        row["status"] = "failed" if errors.get(v.name) else "ok"
        for b in backends:
            s = summaries.get((v.name, b))
            for dotted, col in ROW_METRICS:
                row[f"{b}_{col}"] = _metric(s, dotted)
            row[f"{b}_compute_source"] = s.get("compute_source") if s else None
        if len(backends) == 2:
            row["throughput_rel_error"] = relative_error(
                row["sim_throughput_samples_per_s"], row["real_throughput_samples_per_s"]
            )
        row["error"] = " | ".join(errors.get(v.name, []))
        rows.append(row)
    return rows


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols = list(rows[0]) if rows else []
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in cols})
    return buf.getvalue()


def table(
    rows: Sequence[dict[str, Any]], fields: Sequence[str], backends: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the human table (units in the headers)."""
    from .report import fmt_num, fmt_pct

    headers = ["variant", *fields]
    for b in backends:
        headers += [f"{b} samples/s", f"{b} p50 ms", f"{b} p95 ms", f"{b} staleness"]
    if len(backends) == 2:
        headers.append("throughput error")
    cells = []
    for r in rows:
        c = [r["variant"], *(str(r[f]) for f in fields)]
        for b in backends:
            p50, p95 = r[f"{b}_step_time_p50_s"], r[f"{b}_step_time_p95_s"]
            c += [
                fmt_num(r[f"{b}_throughput_samples_per_s"]),
                fmt_num(p50 * 1e3 if p50 is not None else None),
                fmt_num(p95 * 1e3 if p95 is not None else None),
                fmt_num(r[f"{b}_staleness_mean"], 3),
            ]
        if len(backends) == 2:
            c.append(fmt_pct(r["throughput_rel_error"]))
        if r["status"] != "ok":
            c[0] += " (failed)"
        cells.append(c)
    return headers, cells


def _align(n_fields: int, n_cols: int) -> str:
    return "l" * (1 + n_fields) + "r" * (n_cols - 1 - n_fields)


def sweep_md(
    scn: Scenario,
    file: str,
    grid: Sequence[tuple[str, Sequence[str]]],
    rows: Sequence[dict[str, Any]],
    backends: Sequence[str],
) -> str:
    from .report import md_table

    headers, cells = table(rows, [f for f, _ in grid], backends)
    out = [f"# Sweep of {scn.name}\n"]
    if scn.description:
        out.append(f"{scn.description}\n")
    out.append(
        f"Base scenario `{file}`; grid: "
        + "; ".join(f"`{f}` = {', '.join(vals)}" for f, vals in grid)
        + f" ({len(rows)} variants); backends: {', '.join(backends)}.\n"
    )
    out.append(md_table(headers, cells, _align(len(grid), len(headers))))
    sources = sorted(
        {
            str(r.get(f"{b}_compute_source"))
            for r in rows
            for b in backends
            if b == "sim" and r.get(f"{b}_compute_source")
        }
    )
    if sources:
        out.append(f"Simulator compute times from: {', '.join(f'`{s}`' for s in sources)}.\n")
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        out.append("## Failures\n")
        out += [f"- {r['variant']}: {r['error']}" for r in failed]
        out.append("")
    out.append("Each variant's result files: `<variant>/<backend>/`; all numbers: `sweep.csv`.\n")
    return "\n".join(out)


def sweep_main(scn: Scenario, args: argparse.Namespace) -> int:
    """`pssim sweep FILE --grid a.b=v1,v2 ...`. Exit 0, 1 if any run failed, 2 on bad input
    (nothing run)."""
    from .compare import Progress, compare_folders, needs_profile, run_profile, run_real

    if args.jobs < 1:
        print(f"error: --jobs: must be >= 1 (got {args.jobs})", file=sys.stderr)
        return 2
    grid = parse_grid(args.grid)
    variants = make_variants(scn.name, grid)
    scns = validate_variants(args.file, args.overrides, variants)
    backends = {"sim": ["sim"], "real": ["real"], "both": ["sim", "real"]}[args.backend]
    out = Path(args.out) / f"{scn.name}-sweep"
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    summaries: dict[tuple[str, str], dict[str, Any]] = {}
    errors: dict[str, list[str]] = {}
    n = len(variants)

    if (
        "real" in backends
    ):  # one at a time, and before any simulation: a measurement needs the machine
        for i, (v, vs) in enumerate(zip(variants, scns, strict=True)):
            ov = [*args.overrides, *v.overrides]
            tag = f"[{i + 1}/{n}] {v.name}"
            if args.backend == "both" and needs_profile(vs):
                with progress.status(f"{tag}: profiling the device"):
                    res = run_profile(args.file, ov)
                if not res.ok:
                    print(
                        f"error: {v.name}: profiling failed (exit {res.rc}); "
                        "the simulator falls back to the roofline",
                        file=sys.stderr,
                    )
                    for ln in res.lines:
                        print(ln, file=sys.stderr)
                    errors.setdefault(v.name, []).append(f"profiling failed (exit {res.rc})")
            with progress.status(f"{tag}: real backend"):
                res = run_real(args.file, ov, out)
            if res.ok:
                from .compare import read_summary

                summaries[(v.name, "real")] = read_summary(out / v.name / "real")
                progress.line(f"{tag}: real  done ({res.seconds:.1f} s)")
            else:
                print(f"error: {v.name}: real backend failed (exit {res.rc})", file=sys.stderr)
                for ln in res.lines:
                    print(ln, file=sys.stderr)
                errors.setdefault(v.name, []).append(
                    f"real failed (exit {res.rc}): " + " | ".join(res.lines[-2:])
                )
                progress.line(f"{tag}: real  FAILED")

    if "sim" in backends:
        jobs = [(v, [*args.overrides, *v.overrides]) for v in variants]
        # compared with real runs on this machine, the simulator predicts those runs
        view = "here" if "real" in backends else "target"
        t0 = time.perf_counter()
        if args.jobs > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=min(args.jobs, len(jobs))) as pool:
                futs = [
                    (v, pool.submit(_sim_variant, args.file, ov, str(out), view)) for v, ov in jobs
                ]
                for i, (v, fut) in enumerate(futs):
                    try:
                        summaries[(v.name, "sim")] = fut.result()
                        progress.line(
                            f"[{i + 1}/{n}] {v.name}: sim   done "
                            f"({time.perf_counter() - t0:.1f} s since the sweep's first)"
                        )
                    except Exception as exc:  # one broken variant must not lose the others
                        _sim_failed(v, exc, errors)
        else:
            for i, (v, ov) in enumerate(jobs):
                t0 = time.perf_counter()
                try:
                    summaries[(v.name, "sim")] = _sim_variant(args.file, ov, str(out), view)
                    progress.line(
                        f"[{i + 1}/{n}] {v.name}: sim   done ({time.perf_counter() - t0:.1f} s)"
                    )
                except Exception as exc:  # one broken variant must not lose the others
                    _sim_failed(v, exc, errors)

    if args.backend == "both":
        for v in variants:
            if (v.name, "sim") in summaries and (v.name, "real") in summaries:
                compare_folders(
                    out / v.name / "sim", out / v.name / "real", out / v.name, plots=False
                )

    rows = sweep_rows(variants, backends, summaries, errors)
    write_atomic_text(out / "sweep.csv", rows_csv(rows))
    write_atomic_text(out / "sweep.md", sweep_md(scn, args.file, grid, rows, backends))
    _print_table(rows, [f for f, _ in grid], backends)
    print(f"sweep: {out / 'sweep.md'}")
    return 1 if errors else 0


def _sim_failed(v: Variant, exc: BaseException, errors: dict[str, list[str]]) -> None:
    print(f"error: {v.name}: simulator failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    errors.setdefault(v.name, []).append(f"sim failed: {type(exc).__name__}: {exc}")


def _print_table(
    rows: Sequence[dict[str, Any]], fields: Sequence[str], backends: Sequence[str]
) -> None:
    headers, cells = table(rows, fields, backends)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(show_header=True)
        for i, h in enumerate(headers):
            t.add_column(h, justify="left" if i <= len(fields) else "right", overflow="fold")
        for c in cells:
            t.add_row(*c)
        Console().print(t)
    else:
        from .report import md_table

        print(md_table(headers, cells, _align(len(fields), len(headers))), end="")
