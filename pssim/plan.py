"""`pssim plan`: extrapolate a scenario to hardware from a catalog and price each configuration.

For every GPU entry of the catalog (`kind: gpu`) and a small grid of worker and server counts,
the scenario is simulated on that GPU with compute times from the catalog roofline
(`cluster.workers.device=cuda`, `compute.profile=none`, `compute.step_time_s=null`; the entry's
own peak rates, memory bandwidth and efficiency, so a user catalog's numbers are the ones used).
Everything else (model, batch, sync mode, links, sharding, stragglers, `per_device`, capped at the
worker count) stays as the scenario and its `--set`s say.

Price per hour, an assumption stated in plan.md:
  devices x the GPU entry's `price_per_hour_usd`, where devices = ceil(workers / per_device) x
  pipeline stages (a GPU price is an instance price, so the worker hosts' CPUs are included), plus
  each PS shard as `SERVER_CORES` cores of the catalog's `cpu` entry (a shard is one process; a
  small VM of that size is what carries its NIC); servers are free when the catalog has no `cpu`.
A configuration whose modelled peak worker memory exceeds the GPU's `memory_gb` is marked as not
fitting and never recommended; one the scenario rules refuse (e.g. more shards than partitions, a
straggler index beyond the worker count) is listed as invalid.

The answer is the cheapest configuration that reaches `--target-samples-per-s` within
`--budget-per-hour` (or the fastest within the budget, or the best samples per dollar), with the
simulator's error as measured against the real backend (reports/validation/suite.json, written by
`pssim compare ... --report-dir reports/validation`) when that measurement exists.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import write_atomic_text
from .scenario import Problem, ScenarioError, load_scenario

if TYPE_CHECKING:
    from .catalog import Catalog, DeviceEntry
    from .costs import CostModel
    from .scenario import Scenario

WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64)
SERVER_COUNTS = (1, 2, 4, 8)
SERVER_CORES = 4  # cores of the catalog's `cpu` entry priced per PS shard
VALIDATION_SUITE = Path("reports") / "validation" / "suite.json"
BOTTLENECKS = ("device", "server", "worker_egress", "server_ingress", "server_egress")
PLAN_COLUMNS = (
    "gpu",
    "workers",
    "servers",
    "devices",
    "status",
    "throughput_samples_per_s",
    "step_time_p50_s",
    "cost_per_hour_usd",
    "gpu_cost_per_hour_usd",
    "server_cost_per_hour_usd",
    "samples_per_usd",
    "meets_target",
    "within_budget",
    "peak_worker_memory_gb",
    "gpu_memory_gb",
    "bottleneck",
    "error",
)


# ------------------------------------------------------------------------------ compute costs
def roofline_costs(scn: Scenario, entry: DeviceEntry, entry_name: str) -> CostModel:
    """The scenario's cost model with compute times from `entry`'s roofline (any catalog's
    entry)."""
    from .costs import build_costs

    return build_costs(scn, entry=entry, entry_name=entry_name)


# ------------------------------------------------------------------------------- one point
def point_overrides(
    scn: Scenario, gpu: str, workers: int, servers: int, builtin_gpus: set[str]
) -> list[str]:
    """The overrides that put the scenario on `workers` x `gpu` with `servers` shards."""
    per_device = min(scn.cluster.workers.per_device, workers)
    return [
        "cluster.workers.device=cuda",
        # the schema knows the built-in catalog only: a user GPU is named in the results, not here
        f"cluster.workers.gpu={gpu if gpu in builtin_gpus else 'null'}",
        "compute.profile=none",
        "compute.step_time_s=null",
        f"cluster.workers.count={workers}",
        f"cluster.workers.per_device={per_device}",
        f"cluster.servers.count={servers}",
    ]


def simulate_point(file: str, overrides: list[str], catalog_path: str, gpu: str) -> dict[str, Any]:
    """Simulate one configuration (runs in a worker process). Returns metrics or status invalid."""
    from .catalog import load_catalog
    from .records import summarize
    from .sim import simulate

    try:
        scn = load_scenario(file, overrides)
    except ScenarioError as exc:
        return {
            "status": "invalid",
            "error": "; ".join(
                f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems
            ),
        }
    entry = load_catalog(catalog_path)[gpu]
    rec, extra = simulate(scn, roofline_costs(scn, entry, gpu))
    s = summarize(scn, rec, extra)
    util = s.get("utilization", {})
    return {
        "status": "ok",
        "throughput_samples_per_s": float(s["throughput_samples_per_s"]),
        "step_time_p50_s": float(s["step_time_s"]["p50"]),
        "peak_worker_memory_bytes": max(
            (v for k, v in s.get("peak_memory_bytes", {}).items() if "worker" in k or "stage" in k),
            default=0,
        ),
        "bottleneck": max(BOTTLENECKS, key=lambda k: util.get(k, 0.0)),
        "devices": -(-scn.cluster.workers.count // scn.cluster.workers.per_device)
        * scn.pipeline.stages,
    }


def _point_job(job: tuple[str, list[str], str, str]) -> dict[str, Any]:
    return simulate_point(*job)


# ----------------------------------------------------------------------------------- pricing
def price_row(
    row: dict[str, Any],
    gpu: DeviceEntry,
    cpu: DeviceEntry | None,
    target: float | None,
    budget: float | None,
) -> None:
    """Fill cost, samples per dollar and the target / budget / memory verdicts into a simulated
    row."""
    gpu_cost = row["devices"] * gpu.price_per_hour_usd
    server_cost = row["servers"] * SERVER_CORES * cpu.price_per_hour_usd if cpu else 0.0
    cost = gpu_cost + server_cost
    thr = row["throughput_samples_per_s"]
    row.update(
        gpu_cost_per_hour_usd=gpu_cost,
        server_cost_per_hour_usd=server_cost,
        cost_per_hour_usd=cost,
        samples_per_usd=thr * 3600 / cost if cost > 0 else None,
        meets_target=None if target is None else bool(thr >= target),
        within_budget=None if budget is None else bool(cost <= budget),
        peak_worker_memory_gb=row.pop("peak_worker_memory_bytes", 0) / 1e9,
        gpu_memory_gb=gpu.memory_gb,
    )
    if row["peak_worker_memory_gb"] > gpu.memory_gb:
        row["status"] = "does not fit"
        row["error"] = (
            f"needs {row['peak_worker_memory_gb']:.1f} GB per worker, "
            f"the GPU has {gpu.memory_gb:g} GB"
        )


def choose(
    rows: Sequence[dict[str, Any]], target: float | None, budget: float | None
) -> tuple[dict[str, Any] | None, str]:
    """The recommended configuration and a sentence saying why."""
    from .report import fmt_num

    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return None, "no configuration could be simulated (see plan.csv for why)"

    def fast(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return max(rs, key=lambda r: (r["throughput_samples_per_s"], -r["cost_per_hour_usd"]))

    within = [r for r in ok if budget is None or r["cost_per_hour_usd"] <= budget]
    if target is not None:
        meets = [r for r in within if r["throughput_samples_per_s"] >= target]
        if meets:
            best = min(
                meets, key=lambda r: (r["cost_per_hour_usd"], -r["throughput_samples_per_s"])
            )
            return best, f"cheapest configuration reaching {fmt_num(target)} samples/s" + (
                f" within ${fmt_num(budget)}/h" if budget is not None else ""
            )
        if within:
            return fast(within), f"no configuration reaches {fmt_num(target)} samples/s" + (
                f" within ${fmt_num(budget)}/h; the fastest within the budget"
                if budget is not None
                else "; the fastest one"
            )
        return None, f"no configuration costs at most ${fmt_num(budget)}/h"
    if budget is not None:
        if within:
            return fast(within), f"fastest configuration within ${fmt_num(budget)}/h"
        return None, f"no configuration costs at most ${fmt_num(budget)}/h"
    priced = [r for r in ok if r["samples_per_usd"] is not None]
    if priced:
        return max(
            priced, key=lambda r: r["samples_per_usd"]
        ), "most samples per dollar; no target or budget given"
    return fast(ok), "fastest configuration; no target, budget or prices given"


def describe(r: dict[str, Any]) -> str:
    from .report import fmt_num

    return (
        f"{r['workers']} x {r['gpu']} ({r['devices']} GPU{'s' if r['devices'] != 1 else ''}) "
        f"+ {r['servers']} PS shard{'s' if r['servers'] != 1 else ''}: "
        f"{fmt_num(r['throughput_samples_per_s'])} samples/s, "
        f"${r['cost_per_hour_usd']:.2f}/h, {fmt_num(r['samples_per_usd'])} samples/$, "
        f"bottleneck {r['bottleneck']}"
    )


# ----------------------------------------------------------------------------- measured error
def measured_error(suite: Path | None = None) -> str:
    """One sentence: the simulator's throughput error measured against the real backend, or that
    it was not."""
    from .profile import host_id

    candidates = (
        [suite]
        if suite
        else [VALIDATION_SUITE, Path(__file__).resolve().parents[1] / VALIDATION_SUITE]
    )
    for p in candidates:
        if p is None or not p.is_file():
            continue
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            thr = doc["fidelity"]["throughput"]
            n, med, mx = int(thr["n"]), thr["median_abs_rel_error"], thr["max_abs_rel_error"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"simulator error: {p} exists but cannot be read; the error is unknown"
        if not n or med is None:
            return (
                f"simulator error: {p} holds no compared scenario; the error has not been measured"
            )
        host = str(doc.get("host", ""))
        where = (
            "on this host"
            if host == host_id()
            else f"on another host ({host.split('|')[0] or 'unknown'})"
        )
        return (
            f"simulator error measured {where}: median {med * 100:.1f}%, max {mx * 100:.1f}% "
            f"|throughput error| over {n} scenarios ({p.parent})"
        )
    return (
        "simulator error has not been measured: no reports/validation/suite.json "
        "(run `pssim compare scenarios/validation/*.yaml --repeats 3 "
        "--report-dir reports/validation` on the machine at hand)"
    )


ROOFLINE_CAVEAT = (
    "compute times here come from the catalog roofline (peak rates x an assumed efficiency), "
    "not from a measured profile, so their error adds to the simulator's"
)


# ------------------------------------------------------------------------------------ driver
def _parse_counts(text: str | None, default: Sequence[int], flag: str) -> list[int]:
    if text is None:
        return list(default)
    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ScenarioError(
            flag, [Problem("", f"expected positive integers separated by commas (got {text!r})")]
        ) from None
    if not vals or vals[0] < 1:
        raise ScenarioError(
            flag, [Problem("", f"expected positive integers separated by commas (got {text!r})")]
        )
    return vals


def plan_rows(
    scn: Scenario,
    file: str,
    overrides: Sequence[str],
    catalog: Catalog,
    workers: Sequence[int],
    servers: Sequence[int],
    target: float | None,
    budget: float | None,
    jobs: int | None = None,
) -> list[dict[str, Any]]:
    """Simulate and price every (gpu, workers, servers) point; one row each (PLAN_COLUMNS)."""
    from .catalog import load_catalog

    builtin = {n for n in load_catalog().names() if load_catalog()[n].kind == "gpu"}
    gpus = [n for n in catalog.names() if catalog[n].kind == "gpu"]
    points = [(g, w, s) for g in gpus for w in workers for s in servers]
    job_args = [
        (file, [*overrides, *point_overrides(scn, g, w, s, builtin)], catalog.path, g)
        for g, w, s in points
    ]
    n_jobs = min(jobs or os.cpu_count() or 1, len(points))
    results = _run_points(job_args, n_jobs)
    cpu = catalog["cpu"] if "cpu" in catalog and catalog["cpu"].kind == "cpu" else None
    rows = []
    for (g, w, s), res in zip(points, results, strict=True):
        row: dict[str, Any] = dict.fromkeys(PLAN_COLUMNS)
        row.update(gpu=g, workers=w, servers=s, error="")
        row.update(res)
        if row["status"] == "ok":
            price_row(row, catalog[g], cpu, target, budget)
        rows.append(row)
    return rows


def _run_points(
    job_args: list[tuple[str, list[str], str, str]], n_jobs: int
) -> list[dict[str, Any]]:
    progress = None
    if sys.stdout.isatty():
        from rich.progress import Progress

        progress = Progress(transient=True)
        task = progress.add_task("simulating configurations", total=len(job_args))
        progress.start()
    try:
        if n_jobs > 1:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                results = []
                for r in pool.map(
                    _point_job, job_args, chunksize=max(1, len(job_args) // (4 * n_jobs))
                ):
                    results.append(r)
                    if progress:
                        progress.advance(task)
                return results
        results = []
        for j in job_args:
            results.append(_point_job(j))
            if progress:
                progress.advance(task)
        return results
    finally:
        if progress:
            progress.stop()


def plan_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=list(PLAN_COLUMNS), lineterminator="\n", extrasaction="ignore"
    )
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in PLAN_COLUMNS})
    return buf.getvalue()


def _table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    from .report import fmt_num

    headers = [
        "gpu",
        "workers",
        "servers",
        "GPUs",
        "samples/s",
        "$/h",
        "samples/$",
        "bottleneck",
        "meets",
    ]
    cells = []
    for r in rows:
        verdict = [
            v
            for v, k in (
                (("target" if r["meets_target"] else "below target"), "meets_target"),
                (("budget" if r["within_budget"] else "over budget"), "within_budget"),
            )
            if r[k] is not None
        ]
        cells.append(
            [
                r["gpu"],
                str(r["workers"]),
                str(r["servers"]),
                str(r["devices"]),
                fmt_num(r["throughput_samples_per_s"]),
                f"{r['cost_per_hour_usd']:.2f}",
                fmt_num(r["samples_per_usd"]),
                r["bottleneck"],
                ", ".join(verdict) or "-",
            ]
        )
    return headers, cells


def best_per_gpu(
    rows: Sequence[dict[str, Any]], target: float | None, budget: float | None
) -> list[dict[str, Any]]:
    """Per GPU, the configuration `choose` would pick among that GPU's rows."""
    out = []
    for g in dict.fromkeys(r["gpu"] for r in rows):
        best, _ = choose([r for r in rows if r["gpu"] == g], target, budget)
        if best is not None:
            out.append(best)
    return out


def plan_md(
    scn: Scenario,
    file: str,
    catalog: Catalog,
    rows: Sequence[dict[str, Any]],
    best: dict[str, Any] | None,
    why: str,
    error_line: str,
    target: float | None,
    budget: float | None,
    workers: Sequence[int],
    servers: Sequence[int],
) -> str:
    from .report import fmt_num, md_table

    ok = [r for r in rows if r["status"] == "ok"]
    out = [f"# Plan for {scn.name}\n"]
    if scn.description:
        out.append(f"{scn.description}\n")
    goal = []
    if target is not None:
        goal.append(f"at least {fmt_num(target)} samples/s")
    if budget is not None:
        goal.append(f"at most ${fmt_num(budget)} per hour")
    out.append(
        f"Scenario `{file}` on every GPU of the catalog `{catalog.path}`, "
        f"workers {', '.join(map(str, workers))} x PS shards {', '.join(map(str, servers))}; "
        f"goal: {' and '.join(goal) or 'none given (best samples per dollar)'}.\n"
    )
    out.append("## Recommendation\n")
    out.append(f"**{describe(best)}** ({why}).\n" if best else f"**None**: {why}.\n")
    out.append(f"- {error_line}")
    out.append(f"- {ROOFLINE_CAVEAT}\n")
    out.append("## Best configuration per GPU\n")
    h, c = _table(best_per_gpu(rows, target, budget))
    out.append(md_table(h, c, "lrrrrrrll"))
    if target is not None or budget is not None:
        feasible = sorted(
            (r for r in ok if r["meets_target"] is not False and r["within_budget"] is not False),
            key=lambda r: (r["cost_per_hour_usd"], -r["throughput_samples_per_s"]),
        )
        out.append(
            f"## Configurations meeting the goal ({len(feasible)}, cheapest first, "
            "at most 20 shown)\n"
        )
        h, c = _table(feasible[:20])
        out.append(md_table(h, c, "lrrrrrrll") if feasible else "None.\n")
    out.append("## Assumptions\n")
    out += [
        "- compute: catalog roofline of each GPU entry (its peak rate for the model dtype and "
        "memory bandwidth, times its `efficiency`); "
        "`compute.profile=none`, `compute.step_time_s=null`; everything else as in the scenario",
        "- price per hour = GPUs x the entry's `price_per_hour_usd` "
        "(GPUs = ceil(workers / per_device) x pipeline stages; "
        f"per_device = {scn.cluster.workers.per_device}, capped at the worker count) "
        f"+ PS shards x {SERVER_CORES} cores x the "
        "catalog's `cpu` price"
        + (
            "" if "cpu" in catalog else " (this catalog has no `cpu` entry: servers are not priced)"
        ),
        "- samples per dollar = throughput x 3600 / price per hour",
        "- a configuration whose modelled peak worker memory exceeds the GPU's memory is never "
        "recommended",
    ]
    skipped = [r for r in rows if r["status"] != "ok"]
    if skipped:
        reasons = dict.fromkeys(f"{r['status']}: {r['error']}" for r in skipped)
        out.append(
            f"- {len(skipped)} configurations left out: "
            + "; ".join(list(reasons)[:5])
            + (" ..." if len(reasons) > 5 else "")
        )
    out.append("\nEvery configuration: `plan.csv`.\n")
    return "\n".join(out)


def plan_main(scn: Scenario, args: argparse.Namespace) -> int:
    """`pssim plan FILE --catalog FILE [...]`. Exit 0; 2 on bad input (scenario, catalog,
    options)."""
    from .catalog import load_catalog
    from .report import md_table

    problems = [
        Problem(f"--{k.replace('_', '-')}", f"must be > 0 (got {v})")
        for k in ("target_samples_per_s", "budget_per_hour")
        if (v := getattr(args, k, None)) is not None and not (math.isfinite(v) and v > 0)
    ]
    if problems:
        raise ScenarioError("pssim plan", problems)
    workers = _parse_counts(getattr(args, "workers", None), WORKER_COUNTS, "--workers")
    servers = _parse_counts(getattr(args, "servers", None), SERVER_COUNTS, "--servers")
    catalog = load_catalog(str(args.catalog))
    if not any(catalog[n].kind == "gpu" for n in catalog.names()):
        raise ScenarioError(
            str(args.catalog), [Problem("", "has no entry of kind gpu to plan with")]
        )
    target, budget = args.target_samples_per_s, args.budget_per_hour

    rows = plan_rows(
        scn,
        args.file,
        args.overrides,
        catalog,
        workers,
        servers,
        target,
        budget,
        getattr(args, "jobs", None),
    )
    best, why = choose(rows, target, budget)
    error_line = measured_error()
    out = Path(args.out) / f"{scn.name}-plan"
    write_atomic_text(out / "plan.csv", plan_csv(rows))
    write_atomic_text(
        out / "plan.md",
        plan_md(
            scn, args.file, catalog, rows, best, why, error_line, target, budget, workers, servers
        ),
    )

    h, c = _table(best_per_gpu(rows, target, budget))
    print(
        f"best configuration per GPU ({len([r for r in rows if r['status'] == 'ok'])} "
        f"of {len(rows)} configurations simulated):"
    )
    print(md_table(h, c, "lrrrrrrll"), end="")
    print(f"recommended: {describe(best)} ({why})" if best else f"recommended: none: {why}")
    print(error_line)
    print(f"note: {ROOFLINE_CAVEAT}")
    print(f"plan: {out / 'plan.md'}")
    return 0
