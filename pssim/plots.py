"""Plots of a comparison (matplotlib, Agg, imported only when a plot is drawn).

Per scenario: throughput sim vs real (bars, the real runs' min-max as an error bar), step-time
CDFs of the measured steps (step >= warmup_steps; step time = push_end_s - pull_start_s, read from
both steps.csv), staleness histograms (fraction of applied gradients), and a Gantt timeline of
pull / sync wait / compute / push per worker process for a few steps after warm-up, the
simulator above the real backend on one time axis. Per suite: a parity plot of predicted vs
measured throughput with the y = x line and a +-5% band.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot state), so drawing is safe
in any process and never opens a window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIM_COLOR, REAL_COLOR = "#1f77b4", "#d62728"
PHASE_COLORS = {"wait": "#bbbbbb", "pull": "#2ca02c", "compute": "#1f77b4", "push": "#ff7f0e"}
TIMELINE_STEPS = 3  # steps drawn after warm-up
TIMELINE_MAX_ROWS = 16  # worker processes drawn at most


def _figure(
    w: float = 6.4, h: float = 4.0, rows: int = 1, sharex: bool = False
) -> tuple[Figure, Any]:
    import sys

    if "matplotlib.pyplot" not in sys.modules:  # a script that set its own backend keeps it
        import matplotlib

        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    return fig, fig.subplots(rows, 1, sharex=sharex, squeeze=True)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


def load_steps(folder: str | Path) -> pd.DataFrame:
    """A result folder's steps.csv as a DataFrame (empty if missing)."""
    p = Path(folder) / "steps.csv"
    if not p.exists():
        return pd.DataFrame()
    return pd.read_csv(p)


def measured_step_times(steps: pd.DataFrame, warmup: int) -> np.ndarray:
    """Step times (push_end_s - pull_start_s) of the measured steps (step >= warmup), sorted."""
    if steps.empty:
        return np.array([])
    m = steps[steps["step"] >= warmup]
    t = (m["push_end_s"] - m["pull_start_s"]).to_numpy(dtype=float)
    return np.sort(t[np.isfinite(t)])


def _warmup(folder: Path) -> int:
    from .compare.read import read_scenario_data

    try:
        return int(read_scenario_data(folder).get("training", {}).get("warmup_steps", 0))
    except Exception:  # a folder without a readable scenario.yaml: draw every step
        return 0


def throughput_plot(sim: float, real: float, real_runs: Sequence[float], path: Path) -> Path:
    fig, ax = _figure(4.8, 3.6)
    bars = ax.bar(["simulator", "real"], [sim, real], color=[SIM_COLOR, REAL_COLOR], width=0.6)
    tops = [sim, max(real, *real_runs) if real_runs else real]
    if len(real_runs) > 1:
        lo, hi = min(real_runs), max(real_runs)
        ax.errorbar(
            [1],
            [real],
            yerr=[[real - lo], [hi - real]],
            color="black",
            capsize=6,
            lw=1.2,
            label=f"min-max of {len(real_runs)} real runs",
        )
        ax.legend(loc="lower right", fontsize=8)
    for b, v, top in zip(bars, [sim, real], tops, strict=True):
        ax.annotate(
            f"{v:,.0f}", (b.get_x() + b.get_width() / 2, top), ha="center", va="bottom", fontsize=9
        )
    err = (sim - real) / real if real else float("nan")
    ax.set_ylabel("throughput (samples/s)")
    ax.set_title(
        f"Throughput (sim error {err * 100:+.1f}%)" if math.isfinite(err) else "Throughput"
    )
    ax.margins(y=0.15)
    return _save(fig, path)


def step_time_cdf_plot(sim_t: np.ndarray, real_t: np.ndarray, path: Path) -> Path:
    fig, ax = _figure()
    for t, label, color in ((sim_t, "simulator", SIM_COLOR), (real_t, "real", REAL_COLOR)):
        if t.size:
            y = np.arange(1, t.size + 1) / t.size
            ax.step(
                t * 1e3,
                y,
                where="post",
                label=f"{label} (p50 {np.percentile(t, 50) * 1e3:.2f} ms)",
                color=color,
            )
    ax.set_xlabel("step time (ms)")
    ax.set_ylabel("fraction of measured steps")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Step-time CDF (steps after warm-up)")
    return _save(fig, path)


def staleness_plot(sim_hist: dict[str, int], real_hist: dict[str, int], path: Path) -> Path:
    fig, ax = _figure()
    keys = sorted({int(k) for k in (*sim_hist, *real_hist)}) or [0]
    x = np.arange(len(keys))
    for off, hist, label, color in (
        (-0.2, sim_hist, "simulator", SIM_COLOR),
        (0.2, real_hist, "real", REAL_COLOR),
    ):
        total = sum(hist.values()) or 1
        ax.bar(
            x + off,
            [hist.get(str(k), 0) / total for k in keys],
            width=0.4,
            label=label,
            color=color,
        )
    ax.set_xticks(x, [str(k) for k in keys])
    ax.set_xlabel("staleness (updates applied between read and application)")
    ax.set_ylabel("fraction of applied gradients")
    ax.legend()
    ax.set_title("Staleness histogram (steps after warm-up)")
    return _save(fig, path)


def _phases(row: pd.Series) -> list[tuple[str, float, float]]:
    wait = float(row.get("wait_s", 0.0) or 0.0)
    wait = 0.0 if not math.isfinite(wait) else wait
    a = float(row["pull_start_s"])
    return [
        ("wait", a, a + wait),
        ("pull", a + wait, float(row["pull_end_s"])),
        ("compute", float(row["compute_start_s"]), float(row["compute_end_s"])),
        ("push", float(row["push_start_s"]), float(row["push_end_s"])),
    ]


def timeline_plot(
    panels: Sequence[tuple[str, pd.DataFrame, int]],
    path: Path,
    n_steps: int = TIMELINE_STEPS,
    max_rows: int = TIMELINE_MAX_ROWS,
) -> Path:
    """Gantt chart per panel (title, steps, warmup): steps warmup .. warmup + n_steps - 1, time
    from the window start."""
    n_rows = 1
    for _, df, _ in panels:
        if not df.empty:
            n_rows = max(n_rows, min(max_rows, len(df.groupby(["worker", "stage"]))))
    fig, axes = _figure(
        9.0, 1.2 + len(panels) * (0.9 + 0.28 * n_rows), rows=len(panels), sharex=True
    )
    axes = np.atleast_1d(axes)
    for ax, (title, df, warmup) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10, loc="left")
        win = df[(df["step"] >= warmup) & (df["step"] < warmup + n_steps)] if not df.empty else df
        if win.empty:
            ax.text(
                0.5, 0.5, "no steps in the window", ha="center", va="center", transform=ax.transAxes
            )
            continue
        procs = sorted(
            {(int(w), int(s)) for w, s in zip(win["worker"], win["stage"], strict=True)}
        )[:max_rows]
        t0 = float(win["pull_start_s"].min())
        for i, proc in enumerate(procs):
            rows = win[(win["worker"] == proc[0]) & (win["stage"] == proc[1])]
            spans: dict[str, list[tuple[float, float]]] = {k: [] for k in PHASE_COLORS}
            for _, r in rows.iterrows():
                for kind, a, b in _phases(r):
                    if math.isfinite(a) and math.isfinite(b) and b > a:
                        spans[kind].append(((a - t0) * 1e3, (b - a) * 1e3))
            for kind, iv in spans.items():
                if iv:
                    ax.broken_barh(iv, (i - 0.4, 0.8), facecolors=PHASE_COLORS[kind])
        multi_stage = any(s > 0 for _, s in procs)
        ax.set_yticks(
            range(len(procs)),
            [f"w{w}.s{s}" if multi_stage else f"w{w}" for w, s in procs],
            fontsize=8,
        )
        ax.set_ylim(len(procs) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    axes[0].legend(
        handles=[Patch(color=c, label=k) for k, c in PHASE_COLORS.items()],
        ncols=4,
        fontsize=8,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
    )
    axes[-1].set_xlabel(f"time since the start of step {panels[0][2]} (ms)")
    return _save(fig, path)


def _title(label: str, expected: str, summary: dict[str, Any]) -> str:
    backend = summary.get("backend")
    return label if backend == expected else f"{label} (a {backend} result)"


def scenario_plots(
    sim_dir: str | Path,
    real_dir: str | Path,
    out_dir: str | Path,
    sim: dict[str, Any],
    real: dict[str, Any],
    repeats: Sequence[dict[str, Any]] = (),
) -> dict[str, Path]:
    """Draw the four comparison plots into out_dir; returns {plot name: file}."""
    sim_dir, real_dir, out_dir = Path(sim_dir), Path(real_dir), Path(out_dir)
    sim_steps, real_steps = load_steps(sim_dir), load_steps(real_dir)
    sw, rw = _warmup(sim_dir), _warmup(real_dir)
    runs = [real["throughput_samples_per_s"], *(r["throughput_samples_per_s"] for r in repeats)]
    runs = [float(x) for x in runs if x is not None]
    return {
        "throughput": throughput_plot(
            float(sim["throughput_samples_per_s"] or 0.0),
            float(real["throughput_samples_per_s"] or 0.0),
            runs,
            out_dir / "throughput.png",
        ),
        "step_time_cdf": step_time_cdf_plot(
            measured_step_times(sim_steps, sw),
            measured_step_times(real_steps, rw),
            out_dir / "step_time_cdf.png",
        ),
        "staleness": staleness_plot(
            sim.get("staleness", {}).get("histogram", {}) or {},
            real.get("staleness", {}).get("histogram", {}) or {},
            out_dir / "staleness.png",
        ),
        "timeline": timeline_plot(
            [
                (_title("simulator", "sim", sim), sim_steps, sw),
                (_title("real backend", "real", real), real_steps, rw),
            ],
            out_dir / "timeline.png",
        ),
    }


def _short_labels(names: Sequence[str]) -> list[str]:
    """`v04-bsp-4w2s-straggler` -> `v04` when every name starts with a distinct id like that."""
    ids = [n.split("-", 1)[0] for n in names]
    if all(re.fullmatch(r"[A-Za-z]{0,2}\d+", i) for i in ids) and len(set(ids)) == len(ids):
        return ids
    return list(names)


def parity_plot(
    names: Sequence[str],
    measured: Sequence[float],
    predicted: Sequence[float],
    path: Path,
    measured_range: Sequence[tuple[float, float] | None] | None = None,
    predicted_range: Sequence[tuple[float, float] | None] | None = None,
) -> Path:
    """Predicted vs measured throughput, one labelled point per scenario; log-log when the range is
    wide. With ranges (min, max over the real runs / the simulator's runs), bars show them."""
    fig, ax = _figure(6.0, 5.4)
    x, y = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    log = lo > 0 and hi / lo > 10
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        line = np.geomspace(lo / 1.5, hi * 1.5, 200)
    else:
        pad = 0.1 * (hi - lo or hi or 1.0)
        line = np.linspace(max(lo - pad, 0.0), hi + pad, 200)
    ax.fill_between(line, line * 0.95, line * 1.05, color="0.85", label="+-5%")
    ax.plot(line, line, color="0.3", lw=1, label="y = x")

    def bars(
        ranges: Sequence[tuple[float, float] | None] | None, centre: np.ndarray
    ) -> np.ndarray | None:
        if not ranges or all(r is None for r in ranges):
            return None
        lo_hi = np.array(
            [r if r is not None else (c, c) for r, c in zip(ranges, centre, strict=True)],
            dtype=float,
        )
        return np.vstack(
            [np.maximum(centre - lo_hi[:, 0], 0.0), np.maximum(lo_hi[:, 1] - centre, 0.0)]
        )

    xerr, yerr = bars(measured_range, x), bars(predicted_range, y)
    if xerr is not None or yerr is not None:
        ax.errorbar(
            x,
            y,
            xerr=xerr,
            yerr=yerr,
            fmt="none",
            ecolor=SIM_COLOR,
            alpha=0.5,
            lw=1,
            capsize=2,
            zorder=2,
            label="min-max over runs",
        )
    ax.scatter(x, y, color=SIM_COLOR, zorder=3)
    for n, a, b in zip(_short_labels(names), x, y, strict=True):
        ax.annotate(n, (a, b), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlim(line[0], line[-1])
    ax.set_ylim(line[0], line[-1])
    ax.set_xlabel("measured throughput, real backend (samples/s)")
    ax.set_ylabel("predicted throughput, simulator (samples/s)")
    ax.set_title("Simulator vs real throughput" + (" (log-log)" if log else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best")
    return _save(fig, path)
