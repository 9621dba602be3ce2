"""What a scenario would cost to run, estimated before anything runs, and the limits on it.

Field bounds (pssim.scenario.schema) keep each number sane on its own; these estimates cover what
several fields make together, so that a scenario that validates also runs to its end in both
backends, neither crashing nor exhausting memory nor running for days:

- `sim_memory_bytes`: what the simulator holds (its records are dense arrays of worker processes
  x steps, and x shards for the gradients: pssim.records.Records; its step logs and draws);
- `sim_events`: SimPy events and messages the simulation schedules (about workers x steps x
  shards), plus the planning before it (topology, shard placement, pipeline cut) in the same unit;
- `sim_duration_s`: the simulated time the run reaches, which must stay well below 2^24 s
  (1.7e7 s): the simulator finishes a job or a flow once it is within 1 ns of its end, and from
  there on float64 seconds step by more than 2 ns, so that a device shared by several processes
  can stop making progress (pssim.sim.resources.SharedProcessor; found at 1.7e7 s);
- `real_memory_bytes`: what psreal's processes hold (parameters, gradients, buffers, a batch's
  activations and the data shard per worker; each shard's float32 master copy and optimiser state).

Every estimate is O(fields): none builds the shard plan, the pipeline cut or any per-worker list.
The byte and event costs per unit were measured on pssim.sim (CPython 3.11, numpy 2) and rounded
up; tests/test_validation_edges.py checks them against real runs. The limits are module globals,
read at each check (that test lowers them to what it can afford to run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from .bounds import MAX_PARTITIONS
from .profiles import named_profile

if TYPE_CHECKING:
    from ..workload import Workload
    from .schema import ModelSpec

# ---------------------------------------------------------------------------------------- limits
MAX_SIM_MEMORY_BYTES = 8e9  # 8 GB of records and logs in the simulator
MAX_SIM_EVENTS = 1e9  # events and messages: a few hours of simulation
MAX_SIM_DURATION_S = 2e6  # about 23 days of simulated time, 8 times below 2^24 s (see above)
MAX_REAL_PROCESS_BYTES = 1e13  # 10 TB in one psreal process: more than any one machine has
MAX_REAL_TOTAL_BYTES = 1e15  # 1 PB over all of psreal's processes

# ------------------------------------------------------------- measured costs (rounded up)
SIM_BYTES_PER_STEP = 1200  # per worker process and step: record row, step log, draws
SIM_BYTES_PER_ACTION = 400  # per pipeline microbatch action (forward or backward) and step
SIM_BYTES_PER_GRADIENT = 400  # per worker process, step and shard: gradient records, shard logs
SIM_BYTES_PER_PARTITION = 400
SIM_BYTES_PER_UNIT = 3000  # a model layer: its parameters' specs, costs, roofline
SIM_EVENTS_BASE = 100  # per run, and per process (its start, its last messages, the drain)
SIM_EVENTS_PER_STEP = 16  # per worker process and step (pull, compute, push, bookkeeping)
SIM_EVENTS_PER_SHARD = 16  # per worker process, step and shard: 3 messages, ~5 events each
SIM_EVENTS_PER_ACTION = 12  # per pipeline microbatch action, its activation message included
SIM_EVENTS_PER_UNIT = 6  # per model unit under communication.overlap (backward unit by unit)
# planning, in events (an event costs about 10 us; these Python loops 4 to 400 ns per pass)
PLAN_EVENTS_PER_DRAW = 3  # per worker process: its seeded random streams
PLAN_EVENTS_PER_PAIR = 0.005  # per (worker process, shard) pair of the topology, plus ...
PLAN_EVENTS_PER_PAIR_SHARD = 0.001  # ... per shard again (a shard's pushers are found by scanning)
PLAN_EVENTS_PER_GREEDY = 0.015  # greedy_bytes: per (partition, shard) pair
PLAN_EVENTS_PER_CUT = 0.04  # balanced pipeline cut: per pass of its O(stages x units^2) search

REAL_PROCESS_BASE_BYTES = 3e8  # a psreal process with torch imported
HOST_S_PER_ELEMENT = 1e-8  # packing, unpacking, applying: generous for any host
HEADER_BYTES = 1000  # per message, generous
HOST_MIN_SLICE_S = 0.75e-3  # the shortest default Linux scheduler slice (pssim.profile)


@lru_cache(maxsize=32)
def _workload_of(model_json: str) -> Workload:
    from ..workload import build_workload
    from .schema import ModelSpec

    return build_workload(ModelSpec.model_validate_json(model_json))


def workload(model: ModelSpec) -> Workload:
    """The model's workload, built once per model (the checks each need it)."""
    return _workload_of(model.model_dump_json())


def partition_count(model: ModelSpec, partition_bytes: int) -> int:
    """How many partitions sharding.cut_partitions cuts the parameters into, without cutting."""
    from ..workload import DTYPE_BYTES

    per = max(1, partition_bytes // DTYPE_BYTES[model.dtype])
    return sum(-(-p.numel // per) for p in workload(model).params)


# -------------------------------------------------------------------------------- the simulator
@dataclass(frozen=True)
class Estimate:
    """An estimate, the limit it is held to, the field a problem is reported on and how the
    estimate was made (for the message)."""

    value: float
    limit: float
    path: str
    how: str

    @property
    def over(self) -> bool:
        return not self.value <= self.limit


def _largest(named: dict[str, float]) -> str:
    return max(named, key=lambda k: named[k])


def _counts(s: Any) -> tuple[int, int, int, int, int]:
    return (
        s.cluster.workers.count,
        s.pipeline.stages,
        s.training.steps,
        s.cluster.servers.count,
        s.pipeline.microbatches,
    )


def sim_memory_bytes(s: Any) -> Estimate:
    """Bytes the simulator holds at its peak (sections: model, training, cluster, pipeline,
    sharding)."""
    W, P, T, S, M = _counts(s)
    cells = W * P * T
    units = len(workload(s.model).units)
    parts = min(partition_count(s.model, s.sharding.partition_bytes), MAX_PARTITIONS)
    actions = 2 * M if P > 1 else 0
    terms = {
        "steps": cells * (SIM_BYTES_PER_STEP + SIM_BYTES_PER_ACTION * actions),
        "gradients": cells * S * SIM_BYTES_PER_GRADIENT,
        "plan": parts * SIM_BYTES_PER_PARTITION
        + units * SIM_BYTES_PER_UNIT
        + W * P * S * 8.0
        + P * actions * 100.0,
        "cut": 40.0 * P * units if P > 1 and s.pipeline.partition == "balanced" else 0.0,
    }
    value = float(sum(terms.values()))
    if terms["cut"] > value / 2:
        path = "pipeline.stages"
    elif terms["steps"] > value / 2 and actions and M > max(W, T):
        path = "pipeline.microbatches"
    else:
        path = _count_path(W, T, S if terms["gradients"] > terms["steps"] else 0)
    how = (
        f"records of {W} workers x {P} pipeline stages x {T} steps"
        + (f" x {2 * M} microbatch actions" if actions else "")
        + f", and x {S} shards for the gradients"
    )
    return Estimate(value, MAX_SIM_MEMORY_BYTES, path, how)


def _count_path(W: int, T: int, S: int) -> str:
    return _largest({"training.steps": T, "cluster.workers.count": W, "cluster.servers.count": S})


def sim_events(s: Any) -> Estimate:
    """SimPy events and messages, and the planning in events (sections: model, training,
    cluster, pipeline, sharding, communication, compute)."""
    W, P, T, S, M = _counts(s)
    units = len(workload(s.model).units)
    parts = min(partition_count(s.model, s.sharding.partition_bytes), MAX_PARTITIONS)
    per_step = (
        SIM_EVENTS_PER_STEP
        + SIM_EVENTS_PER_SHARD * S
        + (SIM_EVENTS_PER_ACTION * 2 * M if P > 1 else 0)
        + (SIM_EVENTS_PER_UNIT * units if s.communication.overlap else 0)
    )
    prof = named_profile(s.compute.profile)
    if prof is not None and not isinstance(prof, str) and s.compute.step_time_s is None:
        # `pssim simulate --here` runs a measured step on the host model slice by slice
        per_step += prof.step_compute_s / (prof.cpu_slice_s or HOST_MIN_SLICE_S)
    run = float(W * P * T * per_step + SIM_EVENTS_BASE * (1 + W * P + S))
    cut = P * max(0, units - P + 1) * units / 2 if P > 1 else 0
    plan = (
        PLAN_EVENTS_PER_DRAW * W * P
        + W * P * S * (PLAN_EVENTS_PER_PAIR + PLAN_EVENTS_PER_PAIR_SHARD * S)
        + (PLAN_EVENTS_PER_GREEDY * parts * S if s.sharding.policy == "greedy_bytes" else 0)
        + (PLAN_EVENTS_PER_CUT * cut if s.pipeline.partition == "balanced" else 0)
    )
    if plan > run:
        how = (
            f"planning {W * P} worker processes x {S} shards"
            + (
                f", {parts} partitions placed greedily"
                if s.sharding.policy == "greedy_bytes"
                else ""
            )
            + (f", {units} layers cut into {P} stages" if P > 1 else "")
        )
        path = (
            "pipeline.stages"
            if s.pipeline.partition == "balanced" and PLAN_EVENTS_PER_CUT * cut > plan / 2
            else "cluster.servers.count"
        )
    else:
        how = f"{W} workers x {P} pipeline stages x {T} steps x about {per_step:.3g} each"
        path = "pipeline.microbatches" if P > 1 and 2 * M > max(W, T, S) else _count_path(W, T, S)
    return Estimate(run + plan, MAX_SIM_EVENTS, path, how)


@dataclass(frozen=True)
class _Duration:
    steps: int
    compute_s: float  # per step, stragglers and sharing included
    comm_s: dict[str, float]  # per step: where the communication time goes, by the field
    restarts: dict[str, float]  # faults.i.restart_after_s -> seconds


def _step_compute_s(s: Any) -> tuple[float, str]:
    """Forward+backward seconds of one step, without stragglers, and the field that sets it."""
    if s.compute.step_time_s is not None:
        return s.compute.step_time_s, "compute.step_time_s"
    from ..catalog import load_catalog, roofline_s

    wl = workload(s.model)
    name = s.cluster.workers.gpu or ("cpu" if s.cluster.workers.device == "cpu" else "A100-80GB")
    entry = load_catalog()[name]
    from ..workload import DTYPE_BYTES

    eb, B = DTYPE_BYTES[s.model.dtype], s.training.batch_size
    fl = wl.fwd_flops_per_sample * B
    pb = wl.numel * eb
    act = sum(u.saved_elems_per_sample for u in wl.units) * B * eb
    t = roofline_s(entry, fl, pb + act, s.model.dtype) + roofline_s(
        entry, 2 * fl, 2 * pb + act, s.model.dtype
    )
    prof = named_profile(s.compute.profile)
    if prof is not None and not isinstance(prof, str):
        t = max(t, prof.step_compute_s, sum(prof.stage_fwd_s) + sum(prof.stage_bwd_s))
        return t, "compute.profile"
    return t, "training.batch_size"


def _duration(s: Any) -> _Duration:
    from ..workload import DTYPE_BYTES

    W, P, T, S, M = _counts(s)
    wl = workload(s.model)
    N = wl.numel
    c = s.cluster
    compute, _ = _step_compute_s(s)
    sharing = c.workers.per_device if s.compute.step_time_s is None else 1
    slow = max(s.stragglers.slowdown.values(), default=1.0)
    compute *= sharing * slow * jitter_factor(s.stragglers.jitter, W * P)
    wb = DTYPE_BYTES[s.communication.wire_dtype]
    push_b = 4 + wb if s.communication.compression.kind == "topk" else wb
    per_part = max(1, s.sharding.partition_bytes // DTYPE_BYTES[s.model.dtype])
    shard_n = min(N, N / S + per_part)  # elements of the largest shard, about
    worker_bytes = N * (push_b + wb) + 3 * S * HEADER_BYTES
    bw_w, bw_s = c.workers.nic.bytes_per_s, c.servers.nic.bytes_per_s
    comm = {
        "cluster.workers.nic.bandwidth_gbps": worker_bytes / bw_w,
        "cluster.servers.nic.bandwidth_gbps": W * P * shard_n * (push_b + wb) / bw_s,
        "cluster.workers.nic.latency_us": (3 + 4 * M * (P - 1))
        * max(c.workers.nic.latency_us, c.servers.nic.latency_us)
        * 1e-6,
        "model": HOST_S_PER_ELEMENT * (N + W * P * shard_n),
    }
    if c.network.fabric_gbps:
        comm["cluster.network.fabric_gbps"] = W * worker_bytes / (c.network.fabric_gbps * 125e6)
    if P > 1:
        act = max(u.out_elems_per_sample for u in wl.units) * s.training.batch_size * wb
        comm["cluster.workers.nic.bandwidth_gbps"] += 2 * (P - 1) * act / bw_w
    prof = named_profile(s.compute.profile)
    if prof is not None and not isinstance(prof, str):
        ops = prof.ops.values()
        per_msg = abs(prof.msg_overhead_s) + sum(abs(o.a) + abs(o.p) for o in ops)
        per_elem = sum(abs(o.b) for o in ops)
        comm["compute.profile"] = 3 * S * per_msg + (N + W * P * shard_n) * per_elem
    restarts = {
        f"faults.{i}.restart_after_s": f.restart_after_s
        for i, f in enumerate(s.faults)
        if f.restart_after_s
    }
    return _Duration(T, compute, comm, restarts)


def jitter_factor(jitter: Any, n: int) -> float:
    """About the largest of `n` processes' jitter factors 1 + J in one step (pssim.draws: J has
    mean and standard deviation cv): a synchronous step waits for the slowest, so this rather than
    the mean 1 + cv is what a step takes."""
    cv = jitter.cv
    if jitter.distribution == "none" or cv == 0:
        return 1.0
    if jitter.distribution == "exponential":
        return 1.0 + cv * (math.log(n) + 1.0)  # E[max of n] = cv * H_n <= cv * (ln n + 1)
    sigma2 = math.log(2.0)
    z = NormalDist().inv_cdf(1.0 - 1.0 / (2.0 * n + 2.0))
    return 1.0 + max(cv, math.exp(math.log(cv) - sigma2 / 2 + math.sqrt(sigma2) * z))


def sim_duration_s(s: Any) -> Estimate:
    """Simulated seconds the run reaches (sections: model, training, cluster, compute,
    stragglers, communication, pipeline, faults, sharding)."""
    d = _duration(s)
    comm = sum(d.comm_s.values())
    restarts = sum(d.restarts.values())
    value = d.steps * (d.compute_s + comm) + restarts
    if restarts > value / 2:
        path = _largest(d.restarts)
    elif d.steps >= 1000 and d.steps >= max(d.compute_s, comm):
        path = "training.steps"
    elif d.compute_s >= comm:
        path = _compute_path(s, d.compute_s)
    else:
        path = _largest(d.comm_s)
    how = f"{d.steps} steps x (compute {d.compute_s:.3g} s + communication {comm:.3g} s)" + (
        f" + restarts {restarts:.3g} s" if restarts else ""
    )
    return Estimate(value, MAX_SIM_DURATION_S, path, how)


def _compute_path(s: Any, compute_s: float) -> str:
    """The field that makes a step's compute long: its base time, a straggler, the jitter or
    the sharing of devices."""
    base, base_path = _step_compute_s(s)
    factors = {base_path: base}
    if s.stragglers.slowdown:
        w = max(s.stragglers.slowdown, key=lambda k: s.stragglers.slowdown[k])
        factors[f"stragglers.slowdown.{w}"] = s.stragglers.slowdown[w]
    factors["stragglers.jitter.cv"] = 1.0 + s.stragglers.jitter.cv
    if s.compute.step_time_s is None:
        factors["cluster.workers.per_device"] = s.cluster.workers.per_device
    return _largest(factors)


# ---------------------------------------------------------------------------------------- psreal
def real_memory_bytes(s: Any) -> tuple[Estimate, Estimate]:
    """(the largest psreal process, all of them) in bytes (sections: model, training, cluster,
    pipeline, sync, communication)."""
    from ..workload import DTYPE_BYTES

    W, P, _, S, _ = _counts(s)
    wl = workload(s.model)
    N = wl.numel
    eb, wb = DTYPE_BYTES[s.model.dtype], DTYPE_BYTES[s.communication.wire_dtype]
    B, n = s.training.batch_size, s.training.samples_per_worker
    saved = sum(u.saved_elems_per_sample for u in wl.units)
    # a stage holds about 1/P of the model (a cut never makes one stage much more than that)
    frac = 1.0 if P == 1 else min(1.0, 2.0 / P + max(u.numel for u in wl.units) / max(1, N))
    # psreal.models.synthetic_data: inputs (and their dtype copy), the teacher's logits and the
    # int64 targets; for the transformer its token sequences, built step by step and copied
    if s.model.kind == "transformer":
        sample_bytes = 32 * s.model.seq_len
    else:
        sample_bytes = 8 * s.model.input_dim + 4 * s.model.output_dim + 8
    parts = {
        "model": frac * N * (2 * eb + 2 * (4 + wb)),
        "training.batch_size": frac * B * saved * eb,
        "training.samples_per_worker": float(n * sample_bytes),
    }
    opt = s.training.optimizer
    state = 2 if opt.name == "adam" else 1 if opt.momentum > 0 else 0
    per_elem_server = 4 * (1 + state + (1 if s.sync.mode == "bsp" else 0)) + 2 * (4 + wb)
    per_elem_one = min(N, N / S + max(1, s.sharding.partition_bytes // eb))
    server = per_elem_one * per_elem_server
    worker = sum(parts.values())
    one = max(worker, server) + REAL_PROCESS_BASE_BYTES
    path_one = _largest(parts) if worker >= server else "cluster.servers.count"
    how_one = (
        f"a worker: parameters, gradients and buffers {parts['model']:.3g} bytes, a batch's "
        f"activations {parts['training.batch_size']:.3g}, its data "
        f"{parts['training.samples_per_worker']:.3g}; a shard {server:.3g}"
    )
    procs = W * P + S + 1
    total = W * P * worker + N * per_elem_server + procs * REAL_PROCESS_BASE_BYTES
    how_all = f"{W * P} worker and {S} server processes"
    return (
        Estimate(one, MAX_REAL_PROCESS_BYTES, path_one, how_one),
        Estimate(total, MAX_REAL_TOTAL_BYTES, "cluster.workers.count", how_all),
    )


def human_bytes(x: float) -> str:
    for unit, size in (
        ("EB", 1e18),
        ("PB", 1e15),
        ("TB", 1e12),
        ("GB", 1e9),
        ("MB", 1e6),
        ("kB", 1e3),
    ):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.0f} bytes"
