"""Run records both backends fill, and the one `summarize()` that turns them into summary.json.

Records are written once, when the thing happens, into dense columnar arrays (a 1000-worker
simulation makes millions of them, so no per-record objects):

- steps: one row per worker process per step (a pipeline replica has one process per stage):
  when its pull, compute and push started and ended, how long the pull was held by the sync rule,
  samples processed, bytes sent, and for the real backend the loss;
- grads: one entry per gradient and shard: the shard version the worker read, the version it was
  applied to, when it arrived and when its application finished;
- spans: what each server was busy with (aggregate, update, reply), for utilisation and traces.

Everything in summary.json is derived from these by `summarize`, so prediction and measurement
are computed the same way. docs/metrics.md gives each formula.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from .scenario import Scenario

STEP_TIME_FIELDS = (
    "pull_start_s",
    "pull_end_s",
    "compute_start_s",
    "compute_end_s",
    "push_start_s",
    "push_end_s",
    "wait_s",
)


class SpanKind(IntEnum):
    """What a shard was busy with: summing a pushed gradient (bsp), applying the optimiser (a bsp
    update, or a pushed gradient under ssp/asp), encoding and sending a reply."""

    AGGREGATE = 0
    UPDATE = 1
    REPLY = 2


SPAN_KINDS = tuple(k.name.lower() for k in SpanKind)  # their names in trace.json


class Span(NamedTuple):
    """One piece of a shard's work: `nbytes` is a reply's message size (0 otherwise)."""

    shard: int
    kind: SpanKind
    start_s: float
    end_s: float
    nbytes: int


class Busy(NamedTuple):
    """A compute interval on a pipeline stage's device inside a step (one per microbatch action)."""

    proc: int
    step: int
    start_s: float
    end_s: float


@dataclass
class Records:
    """Columnar run records. Row r of the step arrays is worker process r = replica * stages +
    stage."""

    n_workers: int
    n_stages: int
    n_steps: int
    n_shards: int
    times: dict[str, np.ndarray] = field(init=False)
    samples: np.ndarray = field(init=False)
    bytes_sent: np.ndarray = field(init=False)
    loss: np.ndarray = field(init=False)
    grad_read: np.ndarray = field(init=False)  # version read, -1 = no such gradient
    grad_applied: np.ndarray = field(init=False)  # version it was applied to (before the update)
    grad_arrive_s: np.ndarray = field(init=False)
    grad_done_s: np.ndarray = field(init=False)
    grad_bytes: np.ndarray = field(init=False)
    spans: list[Span] = field(default_factory=list)
    busy: list[Busy] = field(default_factory=list)

    def __post_init__(self) -> None:
        P = self.n_workers * self.n_stages
        shape = (P, self.n_steps)
        self.times = {f: np.full(shape, np.nan) for f in STEP_TIME_FIELDS}
        self.samples = np.zeros(shape, dtype=np.int64)
        self.bytes_sent = np.zeros(shape, dtype=np.int64)
        self.loss = np.full(shape, np.nan)
        gshape = (P, self.n_steps, self.n_shards)
        self.grad_read = np.full(gshape, -1, dtype=np.int64)
        self.grad_applied = np.full(gshape, -1, dtype=np.int64)
        self.grad_arrive_s = np.full(gshape, np.nan)
        self.grad_done_s = np.full(gshape, np.nan)
        self.grad_bytes = np.zeros(gshape, dtype=np.int64)

    @property
    def n_procs(self) -> int:
        return self.n_workers * self.n_stages

    def proc(self, worker: int, stage: int = 0) -> int:
        return worker * self.n_stages + stage

    def merge(self, other: Records) -> None:
        """Fold in the records another process filled (each cell is filled by exactly one
        process)."""
        for f in STEP_TIME_FIELDS:
            m = ~np.isnan(other.times[f])
            self.times[f][m] = other.times[f][m]
        m = ~np.isnan(other.loss)
        self.loss[m] = other.loss[m]
        self.samples += other.samples
        self.bytes_sent += other.bytes_sent
        m = other.grad_applied >= 0
        for a, b in (
            (self.grad_read, other.grad_read),
            (self.grad_applied, other.grad_applied),
            (self.grad_arrive_s, other.grad_arrive_s),
            (self.grad_done_s, other.grad_done_s),
            (self.grad_bytes, other.grad_bytes),
        ):
            a[m] = b[m]
        self.spans.extend(other.spans)
        self.busy.extend(other.busy)

    def shift_time(self, t0: float) -> None:
        """Make times relative to t0 (the real backend's common start)."""
        for f in STEP_TIME_FIELDS:
            if f != "wait_s":
                self.times[f] -= t0
        self.grad_arrive_s -= t0
        self.grad_done_s -= t0
        self.spans = [Span(s, k, a - t0, b - t0, n) for s, k, a, b, n in self.spans]
        self.busy = [Busy(p, st, a - t0, b - t0) for p, st, a, b in self.busy]

    def staleness(self) -> np.ndarray:
        """Per gradient: updates applied to the shard between the read and the application (-1:
        none)."""
        return np.where(self.grad_applied >= 0, self.grad_applied - self.grad_read, -1)


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def _union_length(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def measured_mask(rec: Records, warmup: int) -> np.ndarray:
    m = np.zeros((rec.n_procs, rec.n_steps), dtype=bool)
    m[:, warmup:] = True
    return m & ~np.isnan(rec.times["push_end_s"])


def cpu_seconds_by_role(cpu: dict[tuple[str, int], float]) -> dict[str, float]:
    """`cpu_seconds_by_role` of a summary, from CPU seconds per (kind, index) of a role process
    ("worker", p) / ("server", s): keyed `worker<p>` then `server<s>`, each in index order. Both
    backends name and order their roles so."""
    order = sorted(cpu, key=lambda r: (r[0] != "worker", r[1]))
    return {f"{kind}{i}": float(cpu[(kind, i)]) for kind, i in order}


def summarize(scn: Scenario, rec: Records, extra: dict[str, Any]) -> dict[str, Any]:
    """summary.json from the records (both backends). `extra` carries backend-only keys."""
    from .layout import link_capacities_bytes_per_s

    warm = scn.training.warmup_steps
    t = rec.times
    m = measured_mask(rec, warm)
    stages = rec.n_stages
    start, end = t["pull_start_s"], t["push_end_s"]

    # throughput: each replica's measured samples over its own measured window, summed
    thr = 0.0
    for w in range(rec.n_workers):
        rows = [rec.proc(w, s) for s in range(stages)]
        mm = m[rows].any(axis=0)
        if not mm.any():
            continue
        steps = np.flatnonzero(mm)
        first, last = steps[0], steps[-1]
        a = np.nanmin(start[rows, first])
        b = np.nanmax(end[rows, last])
        n = int(rec.samples[rec.proc(w, 0), first : last + 1].sum())
        if b > a:
            thr += n / (b - a)

    step_time = (end - start)[m]
    compute = (t["compute_end_s"] - t["compute_start_s"])[m]
    wait = t["wait_s"][m]
    comm = ((t["pull_end_s"] - t["pull_start_s"]) + (t["push_end_s"] - t["push_start_s"]))[m] - wait

    st = rec.staleness()
    gm = (st >= 0) & m[:, :, None]
    sv = st[gm]
    hist: dict[str, int] = {}
    if sv.size:
        vals, counts = np.unique(sv, return_counts=True)
        hist = {str(int(v)): int(c) for v, c in zip(vals, counts, strict=True)}

    lo = float(np.nanmin(start[m])) if m.any() else 0.0
    hi = float(np.nanmax(end[m])) if m.any() else 0.0
    window = max(hi - lo, 1e-12)
    util = _utilization(scn, rec, m, lo, hi, window, link_capacities_bytes_per_s(scn))

    summary: dict[str, Any] = {
        "backend": extra["backend"],
        "scenario": scn.name,
        "sync_mode": scn.sync.mode,
        "workers": scn.cluster.workers.count,
        "servers": scn.cluster.servers.count,
        "pipeline_stages": scn.pipeline.stages,
        "microbatches": scn.pipeline.microbatches,
        "throughput_samples_per_s": thr,
        "step_time_s": {
            "mean": float(step_time.mean()) if step_time.size else float("nan"),
            "p50": _pct(step_time, 50),
            "p95": _pct(step_time, 95),
            "p99": _pct(step_time, 99),
        },
        "staleness": {
            "mean": float(sv.mean()) if sv.size else 0.0,
            "max": int(sv.max()) if sv.size else 0,
            "histogram": hist,
        },
        "compute_time_s": {"mean": float(compute.mean()) if compute.size else float("nan")},
        "comm_time_s": {"mean": float(comm.mean()) if comm.size else float("nan")},
        "wait_time_s": {"mean": float(wait.mean()) if wait.size else float("nan")},
        "bytes_sent_total": int(rec.bytes_sent.sum())
        + int(sum(s.nbytes for s in rec.spans if s.kind == SpanKind.REPLY)),
        "utilization": util,
        "bubble_fraction": _bubble(rec, m),
        "peak_memory_bytes": extra.get("peak_memory_bytes", {}),
        "measured_window_s": window,
        "wall_time_s": extra["wall_time_s"],
    }
    for k in (
        "cpu_seconds",
        "cpu_seconds_by_role",
        "simulated_time_s",
        "events",
        "view",
        "compute_source",
        "cost_sources",
        "host_model",
        "final_loss",
        "device",
        "profile",
    ):
        if k in extra:
            summary[k] = extra[k]
    return summary


def _bubble(rec: Records, m: np.ndarray) -> float:
    """Pipeline bubble: the fraction of stage time inside a step's compute phase spent idle."""
    if rec.n_stages == 1 or not rec.busy:
        return 0.0
    by_step: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for p, step, a, b in rec.busy:
        if m[p, step]:
            by_step.setdefault((p // rec.n_stages, step), []).append((a, b))
    idle, total = 0.0, 0.0
    t = rec.times
    for (w, step), _ in by_step.items():
        rows = [w * rec.n_stages + s for s in range(rec.n_stages)]
        a = float(np.nanmin(t["compute_start_s"][rows, step]))
        b = float(np.nanmax(t["compute_end_s"][rows, step]))
        span = b - a
        if span <= 0:
            continue
        for r in rows:
            iv = [(x, y) for (p, s, x, y) in rec.busy if p == r and s == step]
            busy = _union_length(iv, a, b)
            idle += span - busy
            total += span
    return idle / total if total > 0 else 0.0


def _utilization(
    scn: Scenario,
    rec: Records,
    m: np.ndarray,
    lo: float,
    hi: float,
    window: float,
    caps: dict[str, float],
) -> dict[str, float]:
    """Busy fractions inside the measured window [lo, hi]: devices, servers and NIC directions."""
    t = rec.times
    per_device = scn.cluster.workers.per_device
    n_dev = -(-scn.cluster.workers.count // per_device)
    dev_iv: list[list[tuple[float, float]]] = [[] for _ in range(n_dev * rec.n_stages)]
    if rec.n_stages == 1:
        for p in range(rec.n_procs):
            d = p // per_device
            dev_iv[d] += [
                (a, b)
                for a, b in zip(t["compute_start_s"][p], t["compute_end_s"][p], strict=True)
                if a == a
            ]
    else:
        for p, _step, a, b in rec.busy:
            w, s = divmod(p, rec.n_stages)
            dev_iv[(w // per_device) * rec.n_stages + s].append((a, b))
    dev = [_union_length(iv, lo, hi) / window for iv in dev_iv]

    srv_iv: list[list[tuple[float, float]]] = [[] for _ in range(rec.n_shards)]
    srv_out = np.zeros(rec.n_shards)
    for s, k, a, b, nbytes in rec.spans:
        srv_iv[s].append((a, b))
        if k == 2 and lo <= a <= hi:
            srv_out[s] += nbytes
    srv = [_union_length(iv, lo, hi) / window for iv in srv_iv]

    inside = m & (t["push_start_s"] >= lo)
    w_out = rec.bytes_sent.sum(axis=1, where=inside).astype(float)
    gin = (rec.grad_arrive_s >= lo) & (rec.grad_arrive_s <= hi)
    s_in = np.where(gin, rec.grad_bytes, 0).sum(axis=(0, 1)).astype(float)
    out = {
        "device": float(np.mean(dev)) if dev else 0.0,
        "server": float(np.mean(srv)) if srv else 0.0,
        "worker_egress": float(w_out.mean() / (caps["worker"] * window)),
        "server_ingress": float(s_in.mean() / (caps["server"] * window)),
        "server_egress": float(srv_out.mean() / (caps["server"] * window)),
    }
    out["device_max"] = float(np.max(dev)) if dev else 0.0
    out["server_max"] = float(np.max(srv)) if srv else 0.0
    return out
