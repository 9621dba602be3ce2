"""Markdown reports and tables for people: one scenario's comparison, a suite, a sweep, a plan.

Pure formatting: every function takes already-computed numbers (from `pssim.compare`,
`pssim.sweep`, `pssim.plan`) and returns text, so a report reads without opening any JSON.
Numbers are shown in the units people think in (samples/s, ms, %), with the unit in the header.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scenario import Scenario

# (flattened metric, label, scale, unit): the headline rows of a scenario report.
HEADLINE: tuple[tuple[str, str, float, str], ...] = (
    ("throughput_samples_per_s", "throughput", 1.0, "samples/s"),
    ("step_time_s.p50", "step time p50", 1e3, "ms"),
    ("step_time_s.p95", "step time p95", 1e3, "ms"),
    ("staleness.mean", "staleness mean", 1.0, "updates"),
    ("compute_time_s.mean", "compute per step, mean", 1e3, "ms"),
    ("comm_time_s.mean", "communication per step, mean", 1e3, "ms"),
    ("wait_time_s.mean", "sync wait per step, mean", 1e3, "ms"),
)


def fmt_num(x: float | None, digits: int = 4) -> str:
    """A number with `digits` significant digits, no scientific notation for everyday magnitudes."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if -4 <= mag < 9:
        decimals = max(digits - 1 - mag, 0)
        return f"{x:,.{decimals}f}"
    return f"{x:.{digits - 1}e}"


def fmt_pct(x: float | None, signed: bool = True) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"


def md_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> str:
    """A GitHub-flavoured markdown table. `align`: one of l/r/c per column (default: l then r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = {"l": ":--", "r": "--:", "c": ":-:"}

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "| " + " | ".join(sep[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def scenario_setup_lines(scn: dict[str, Any]) -> list[str]:
    """A few bullet lines saying what the scenario runs (from the resolved scenario.yaml)."""
    if not scn:
        return []
    model = scn.get("model", {})
    kind = model.get("kind", "?")
    if kind == "transformer":
        shape = (
            f"transformer, {model.get('layers')} layers, d_model {model.get('d_model')}, "
            f"seq {model.get('seq_len')}"
        )
    elif kind == "mlp":
        shape = "mlp " + "-".join(
            str(x)
            for x in [model.get("input_dim"), *(model.get("hidden") or []), model.get("output_dim")]
        )
    else:
        shape = f"{kind} {model.get('input_dim')}-{model.get('output_dim')}"
    tr, cl = scn.get("training", {}), scn.get("cluster", {})
    w, s = cl.get("workers", {}), cl.get("servers", {})
    sync = scn.get("sync", {})
    mode = sync.get("mode", "?")
    if mode == "ssp":
        mode += f"({sync.get('staleness')})"
    comm = scn.get("communication", {})
    comp = comm.get("compression", {})
    pipe = scn.get("pipeline", {})
    lines = [
        f"- model: {shape}, {model.get('dtype', 'float32')}; batch {tr.get('batch_size')} "
        f"per worker; {tr.get('steps')} steps of which the first {tr.get('warmup_steps')} "
        "are warm-up",
        f"- workers: {w.get('count')} on {w.get('device')} ({w.get('per_device')} per device"
        + (f", catalog GPU {w['gpu']}" if w.get("gpu") else "")
        + f"), NIC {_nic(w)}",
        f"- servers: {s.get('count')} shards, NIC {_nic(s)}; "
        f"sharding {scn.get('sharding', {}).get('policy')}",
        f"- sync: {mode}; wire {comm.get('wire_dtype')}, compression {comp.get('kind')}"
        + (f" (ratio {comp.get('ratio')})" if comp.get("kind") == "topk" else "")
        + (", overlap" if comm.get("overlap") else ""),
    ]
    if pipe.get("stages", 1) > 1:
        lines.append(
            f"- pipeline: {pipe.get('stages')} stages x {pipe.get('microbatches')} microbatches, "
            f"{pipe.get('schedule')}"
        )
    if (
        scn.get("stragglers", {}).get("slowdown")
        or scn.get("stragglers", {}).get("jitter", {}).get("distribution", "none") != "none"
    ):
        st = scn["stragglers"]
        lines.append(
            f"- stragglers: slowdown {st.get('slowdown') or {}}, jitter {st.get('jitter')}"
        )
    if scn.get("faults"):
        lines.append(f"- faults: {scn['faults']}")
    return lines


def _nic(role: dict[str, Any]) -> str:
    nic = role.get("nic", {})

    def g(x: Any) -> str:
        return f"{x:g}" if isinstance(x, int | float) else "?"

    return f"{g(nic.get('bandwidth_gbps'))} Gbit/s, {g(nic.get('latency_us'))} us"


def compute_source_text(source: str | None, profile: str | None) -> str:
    """Where the simulator's compute times came from, in words."""
    if not source:
        return "unknown"
    if source == "step_time_s":
        return "`compute.step_time_s`: a fixed forward+backward time set in the scenario"
    if source.startswith("profile:"):
        return (
            "a device profile measured by `psreal profile` on this host "
            f"(`{profile or source[8:]}`)"
        )
    if source.startswith("roofline:"):
        return (
            f"the hardware catalog's roofline for `{source[9:]}` (no measured profile: peak rates "
            "times an assumed efficiency, so expect larger compute errors)"
        )
    return f"`{source}`"


def profile_compute_text(pc: dict[str, Any]) -> str:
    """The profile's compute per step and how far its calibration runs spread, in words."""
    text = f"the profile's compute per step: {pc['compute_s'] * 1e3:.3g} ms"
    if pc.get("runs"):
        text += (
            f"; its {pc['runs']} calibration run{'s' if pc['runs'] > 1 else ''} measured from "
            f"{pc['min_s'] * 1e3:.3g} to {pc['max_s'] * 1e3:.3g} ms on average "
            f"((max - min) / value {fmt_pct(pc['rel_spread'], signed=False)}); "
            "where compute is on the critical path the prediction moves with it (docs/profiling.md)"
        )
    return text


def scenario_report_md(
    comparison: dict[str, Any], scn: dict[str, Any], plots: dict[str, str]
) -> str:
    """report.md of one scenario: setup, headline table, provenance, plots, all metrics."""
    name = comparison["scenario"]
    m = comparison["metrics"]
    real, sim = comparison["real"], comparison["sim"]
    runs = real.get("runs", 1)
    out = [f"# {name}: simulator vs real backend\n"]
    if comparison.get("description"):
        out.append(f"{comparison['description']}\n")
    out += [*scenario_setup_lines(scn), ""]

    out.append("## Headline metrics\n")
    reps = sim.get("runs") or {}
    out.append(
        "Relative error = (sim - real) / real; positive means the simulator over-predicts."
        + (
            f" The real backend ran {runs} times: 'real' is the median over the runs, the spread "
            f"is (max - min) / mean over all {runs}."
            if runs > 1
            else ""
        )
        + (
            f" The simulator ran {reps['n']} times, each with its own draw of the compute's "
            "natural variation: 'sim' is the median run; the simulated throughput ranges from "
            f"{fmt_num(reps['throughput_min'])} to {fmt_num(reps['throughput_max'])} samples/s "
            "over the runs."
            if reps.get("n", 1) > 1
            else ""
        )
        + "\n"
    )
    headers = ["metric", "sim", "real", "error"] + (["real spread"] if runs > 1 else [])
    rows = []
    for key, label, scale, unit in HEADLINE:
        e = m.get(key)
        if e is None:
            continue
        row = [
            f"{label} ({unit})",
            fmt_num(e["sim"] * scale),
            fmt_num(e["real"] * scale),
            fmt_pct(e["rel_error"]),
        ]
        if key.startswith("staleness") and e["real"] == 0:
            row[3] = "exact (both 0)" if e["sim"] == 0 else f"n/a (real 0, sim {fmt_num(e['sim'])})"
        if runs > 1:
            sp = e.get("real_spread")
            row.append(fmt_pct(sp["rel_spread"], signed=False) if sp else "n/a")
        rows.append(row)
    out.append(md_table(headers, rows))
    wn = comparison.get("within_noise")
    if wn is not None:
        out.append(
            (
                "The simulated and measured throughput ranges overlap: the error is within the "
                "noise of the two."
                if wn
                else "The simulated and measured throughput ranges do not overlap."
            )
            + "\n"
        )

    out.append("## Where the numbers came from\n")
    out.append(
        "- simulator compute times: "
        f"{compute_source_text(sim.get('compute_source'), sim.get('profile'))}"
    )
    pc = sim.get("profile_compute")
    if pc:
        out.append(f"- {profile_compute_text(pc)}")
    sc = sim.get("profile_self_check")
    if sc and sc.get("rel_error") is not None:
        out.append(
            "- profile self-check: the simulator with this profile predicts its own "
            f"{sc['runs']} calibration run{'s' if sc['runs'] > 1 else ''} (1 worker, 1 shard, BSP) "
            f"at {fmt_num(sc['sim'])} samples/s against {fmt_num(sc['real'])} measured "
            f"({fmt_pct(sc['rel_error'])})"
        )
    out.append(
        f"- real backend: device `{real.get('device') or 'n/a'}`, "
        f"link emulation `{real.get('emulation') or 'n/a'}`, "
        f"compute {real.get('compute_source') or 'measured'}; {runs} run{'s' if runs > 1 else ''}"
    )
    folders = [
        f"`{sim['folder']}/`",
        f"`{real['folder']}/`",
        *(f"`{d}/`" for d in real.get("repeat_folders", [])),
    ]
    out.append(f"- result folders: {', '.join(folders)}; numbers: `comparison.json`")
    for n in comparison.get("notes", []):
        out.append(f"- note: {n}")
    out.append("")

    titles = {
        "throughput": "Throughput",
        "step_time_cdf": "Step-time distribution (measured steps)",
        "staleness": "Staleness of applied gradients",
        "timeline": "Timeline of a few steps after warm-up (simulator above, real below)",
    }
    if plots:
        out.append("## Plots\n")
        for key, path in plots.items():
            out.append(f"### {titles.get(key, key)}\n\n![{key}]({path})\n")

    out.append("## All metrics\n")
    rows = [
        [f"`{k}`", fmt_num(e["sim"]), fmt_num(e["real"]), fmt_pct(e["rel_error"])]
        for k, e in m.items()
    ]
    out.append(md_table(["metric", "sim", "real", "error"], rows))
    if comparison.get("only_sim") or comparison.get("only_real"):
        out.append(
            "Reported by one backend only: "
            f"sim {', '.join(comparison.get('only_sim', [])) or '-'}; "
            f"real {', '.join(comparison.get('only_real', [])) or '-'}.\n"
        )
    return "\n".join(out)


def failed_report_md(scn: Scenario, file: str, lines: Sequence[str], rc: int | None) -> str:
    out = [f"# {scn.name}: comparison failed\n"]
    if scn.description:
        out.append(f"{scn.description}\n")
    what = f"The real backend failed (exit {rc})" if rc is not None else "The simulator failed"
    out.append(f"{what} on `{file}`, so there is nothing to compare. Its error output:\n")
    out.append("```\n" + "\n".join(lines or ["(no output)"]) + "\n```\n")
    return "\n".join(out)


def suite_report_md(
    rows: Sequence[dict[str, Any]], stats: dict[str, Any], parity: str | None
) -> str:
    """suite.md: one row per scenario and the fidelity figures of DESIGN.md section 8."""
    out = ["# Simulator fidelity over a suite of scenarios\n"]
    out.append(
        f"{stats['ok']} of {stats['scenarios']} scenarios compared"
        + (f"; failed: {', '.join(stats['failed'])}" if stats["failed"] else "")
        + ".\n"
    )
    out.append("## Fidelity\n")
    labels = {
        "throughput": "throughput",
        "step_time_p50": "step time p50",
        "step_time_p95": "step time p95",
        "staleness_mean": "mean staleness",
    }
    frows = []
    for key, label in labels.items():
        s = stats[key]
        extra = []
        if s["both_zero"]:
            extra.append(f"{len(s['both_zero'])} with real = sim = 0 left out")
        if s["real_zero"]:
            extra.append(
                f"{len(s['real_zero'])} with real = 0 but sim > 0 left out: "
                + ", ".join(f"{z['scenario']} (sim {fmt_num(z['sim'])})" for z in s["real_zero"])
            )
        frows.append(
            [
                label,
                s["n"],
                fmt_pct(s["median_abs_rel_error"], signed=False),
                fmt_pct(s["max_abs_rel_error"], signed=False),
                s["worst"] or "-",
                "; ".join(extra) or "-",
            ]
        )
    out.append(
        md_table(
            ["metric", "n", "median abs error", "max abs error", "worst", "left out"],
            frows,
            "lrrrll",
        )
    )
    rho = stats["spearman_rho_throughput"]
    out.append(
        "- Spearman rho of throughput across scenarios: "
        f"{fmt_num(rho, 3) if rho is not None else 'n/a (fewer than 2 scenarios, or all tied)'}"
    )
    bp = stats["best_pick"]
    if bp:
        verdict = (
            "yes"
            if bp["same"]
            else (
                f"no: the real best is {bp['real_best']}; the simulator's pick measures "
                f"{fmt_pct(bp['real_of_sim_pick_over_real_best'], signed=False)} of it"
            )
        )
        out.append(
            f"- the simulator's best scenario ({bp['sim_best']}) is the real best: {verdict}"
        )
    nf = stats["noise_floor"]
    if nf:
        out.append(
            f"- noise floor (real throughput run-to-run spread, (max - min) / mean): median "
            f"{fmt_pct(nf['median_rel_spread'], signed=False)}, "
            f"max {fmt_pct(nf['max_rel_spread'], signed=False)} "
            f"over {nf['n']} scenarios; errors below it cannot be told from noise"
        )
    else:
        out.append(
            "- noise floor: not measured (run with `--repeats 3` to measure the real backend's "
            "run-to-run spread)"
        )
    ss = stats.get("sim_spread")
    if ss:
        out.append(
            "- simulator spread (throughput (max - min) / mean over its runs, which differ only in "
            "the compute's natural variation): "
            f"median {fmt_pct(ss['median_rel_spread'], signed=False)}, "
            f"max {fmt_pct(ss['max_rel_spread'], signed=False)}"
        )
    pcs = [
        r["profile_compute_spread"]
        for r in rows
        if r.get("status") == "ok" and r.get("profile_compute_spread") is not None
    ]
    if pcs:
        out.append(
            "- profile compute spread ((max - min) of the calibration runs' mean compute per step "
            "over the profile's value): "
            f"median {fmt_pct(statistics.median(pcs), signed=False)}, "
            f"max {fmt_pct(max(pcs), signed=False)} over {len(pcs)} scenarios; "
            "where compute is on the critical path the prediction moves with it"
        )
    sc = stats.get("profile_self_check")
    if sc and sc.get("n"):
        out.append(
            "- profile self-check (the simulator on each profile's own calibration runs, "
            "1 worker and 1 shard): "
            f"median {fmt_pct(sc['median_abs_rel_error'], signed=False)}, max "
            f"{fmt_pct(sc['max_abs_rel_error'], signed=False)} ({sc['worst']}) "
            f"over {sc['n']} scenarios; "
            "an error here is the simulator's on the very runs its profile was measured from"
        )
    wn = stats.get("within_noise")
    if wn:
        out.append(
            "- within noise (simulated and measured throughput ranges overlap): "
            f"{wn['count']} of {wn['n']}"
            + (f"; outside: {', '.join(wn['outside'])}" if wn["outside"] else "")
        )
    out.append(
        "- relative error = (sim - real) / real. Mean staleness is 0 under BSP and whenever no "
        "gradient was stale; a relative error is then undefined, so such scenarios are left out "
        "of the staleness median/max and listed above.\n"
    )
    if parity:
        out.append(f"## Predicted vs measured throughput\n\n![parity]({parity})\n")
    out.append("## Scenarios\n")
    trows = []
    for r in rows:
        name = f"[{r['scenario']}]({r['report']})" if r.get("report") else r["scenario"]
        if r.get("status") != "ok":
            trows.append([name, "failed", "", "", "", "", "", "", "", "", r.get("error", "")])
            continue
        trows.append(
            [
                name,
                fmt_num(r["throughput_sim"]),
                fmt_num(r["throughput_real"]),
                fmt_pct(r["throughput_rel_error"]),
                fmt_pct(r["step_time_p50_rel_error"]),
                fmt_pct(r["step_time_p95_rel_error"]),
                _staleness_cell(r),
                fmt_pct(r["real_throughput_spread"], signed=False)
                if r.get("real_throughput_spread") is not None
                else "-",
                fmt_pct(r["sim_throughput_spread"], signed=False)
                if r.get("sim_throughput_spread") is not None
                else "-",
                _profile_compute_cell(r),
                r.get("error") or "",
            ]
        )
    out.append(
        md_table(
            [
                "scenario",
                "sim samples/s",
                "real samples/s",
                "throughput error",
                "p50 error",
                "p95 error",
                "staleness error",
                "real spread",
                "sim spread",
                "profile compute (spread)",
                "notes",
            ],
            trows,
            "lrrrrrrrrrl",
        )
    )
    return "\n".join(out)


def _profile_compute_cell(r: dict[str, Any]) -> str:
    v = r.get("profile_compute_s")
    if v is None:
        return "-"
    spread = r.get("profile_compute_spread")
    return f"{v * 1e3:.3g} ms" + (
        f" ({fmt_pct(spread, signed=False)})" if spread is not None else ""
    )


def _staleness_cell(r: dict[str, Any]) -> str:
    s, m = r.get("staleness_mean_sim"), r.get("staleness_mean_real")
    if m == 0:
        return "exact (both 0)" if s == 0 else f"n/a (real 0, sim {fmt_num(s, 3)})"
    return fmt_pct(r.get("staleness_mean_rel_error"))
