"""What validation accepts, the simulator runs to its end: scenarios at the edges of the format.

Hypothesis draws scenarios whose every number sits at or near its documented bound (read from the
schema, so the test follows it), with counts from 1 up to their bounds and their combinations.
Each draw is validated and, when accepted, simulated (`pssim.sim.simulate`, `compute.profile:
none`) in a forked child under a time budget (killed after BUDGET_S) and a memory budget
(RLIMIT_AS), so one bad draw fails this test instead of taking it down. Every draw must be
refused at validation (a ScenarioError, one line per problem) or run to its end, and a run must
stay within what validation estimated for it: its events and messages within
pssim.scenario.estimates.sim_events, its memory within sim_memory_bytes (plus a fixed slack),
its simulated time below 2^24 s, where the simulator's 1 ns tolerances still hold.

The limits on events and memory are lowered in the child to what this test can afford (TEST_LIMITS:
a fraction of a second of simulation per draw): the estimates are what this checks, and the real
limits (1e9 events, 8 GB) scale them. Time-like bounds (step time, slowdown, latency, bandwidth,
restarts) and the limit on simulated time are the real ones. The count of draws run and
refused is printed at the end (`pytest -s` or `-rP` shows it). 400 draws (about half of them
simulated) take about 30 s on 2 cores; EDGES_EXAMPLES=5000 ran 5000 (2350 simulated) in 6 min.
"""

from __future__ import annotations

import json
import math
import os
import resource
import select
import signal
import sys
import time
import traceback
from collections import Counter
from typing import Any

import annotated_types as at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from pssim.scenario import ScenarioError, estimates, scenario_from_dict
from pssim.scenario.bounds import MAX_LAYERS, MAX_SLOWDOWN, MIN_LATENCY_US
from pssim.scenario.schema import (
    CompressionSpec,
    ComputeSpec,
    FaultSpec,
    JitterSpec,
    ModelSpec,
    NetworkSpec,
    NicSpec,
    OptimizerSpec,
    PipelineSpec,
    Scenario,
    ServersSpec,
    ShardingSpec,
    SyncSpec,
    TrainingSpec,
    WorkersSpec,
)
from pssim.sim import simulate

EXAMPLES = int(os.environ.get("EDGES_EXAMPLES", "400"))  # more: EDGES_EXAMPLES=5000
BUDGET_S = 30.0  # per draw: validation and simulation (a draw takes well under a second)
MEMORY_BUDGET = 1.5 * 2**30  # bytes of address space a draw may add
MEMORY_SLACK = 96e6  # bytes a run may hold beyond its estimate (allocator, caches, SimPy)
TEST_LIMITS = {"MAX_SIM_EVENTS": 1.5e5, "MAX_SIM_MEMORY_BYTES": 120e6}
SAFE_CLOCK_S = 2.0**24  # simulated time must stay below this (pssim.scenario.estimates)


# ------------------------------------------------------------------------------ bounds and edges
def bounds(model: type[BaseModel], field: str) -> tuple[float, float, bool, bool]:
    """(lowest, highest, lowest excluded, highest excluded) of a numeric field, from its schema."""
    lo = hi = None
    open_lo = open_hi = False
    for m in model.model_fields[field].metadata:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):
            lo, open_lo = m.gt, True
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi, open_hi = m.lt, True
    assert lo is not None and hi is not None, f"{model.__name__}.{field} has no bounds"
    return lo, hi, open_lo, open_hi


def edge_floats(
    model: type[BaseModel], field: str, positive: bool = False
) -> st.SearchStrategy[float]:
    """A float at its bounds, next to them, or anywhere between (above 0 if `positive`)."""
    lo, hi, open_lo, open_hi = bounds(model, field)
    open_lo = open_lo or (positive and lo == 0)
    first = math.nextafter(lo, math.inf) if open_lo else lo
    last = math.nextafter(hi, -math.inf) if open_hi else hi
    near = [math.nextafter(first, math.inf), first + (last - first) * 1e-9, 1.0, last / 2]
    edges = sorted({first, last, *(x for x in near if first <= x <= last)})
    return st.one_of(st.sampled_from(edges), st.floats(first, last))


def int_range(model: type[BaseModel], field: str) -> tuple[int, int]:
    lo, hi, open_lo, open_hi = bounds(model, field)
    return int(lo) + open_lo, int(hi) - open_hi


def edge_ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """An integer at its bounds, next to them, a power of ten between, or anywhere between."""
    powers = [10**k for k in range(1, 19) if lo <= 10**k <= hi]
    return st.one_of(
        st.sampled_from(sorted({x for x in (lo, lo + 1, hi - 1, hi) if lo <= x <= hi})),
        st.sampled_from(powers or [lo]),
        st.integers(lo, hi),
    )


def small_ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, min(hi, lo + 7))


# the sizes a draw may put at their edges (the others stay small, so that the edges of one or two
# sizes, and of every time-like number, are reached with the rest a runnable scenario)
SIZES = (
    "model.width",
    "model.depth",
    "model.seq_len",
    "training.batch_size",
    "training.steps",
    "training.samples_per_worker",
    "cluster.workers.count",
    "cluster.workers.per_device",
    "cluster.servers.count",
    "sync.staleness",
    "sharding.partition_bytes",
    "pipeline.stages",
    "pipeline.microbatches",
)


@st.composite
def edge_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A scenario at the edges: every time-like number (and the seed) at or near a bound, up to
    three sizes at or near theirs, the others small. The rules that relate fields (worker
    indices, divisibility, staleness only with ssp) are kept, so that refusals are of values;
    everything else is for validation to judge."""
    edge = draw(st.sets(st.sampled_from(SIZES), max_size=3))

    def size(name: str, lo: int, hi: int) -> int:
        return draw(edge_ints(lo, hi) if name in edge else small_ints(lo, hi))

    def field(name: str, model: type[BaseModel], attr: str, hi: int | None = None) -> int:
        lo, top = int_range(model, attr)
        return size(name, lo, top if hi is None else min(top, hi))

    kind = draw(st.sampled_from(["linear", "mlp", "transformer"]))
    width = lambda: field("model.width", ModelSpec, "input_dim")  # noqa: E731
    if kind == "linear":
        model: dict[str, Any] = {"kind": kind, "input_dim": width(), "output_dim": width()}
        units = 1
    elif kind == "mlp":
        deep = st.sampled_from([40, 2000, MAX_LAYERS])
        n = draw(deep) if "model.depth" in edge else size("model.depth", 0, 3)
        w = width()
        hidden = [w] * n if n > 3 else [width() for _ in range(n)]
        model = {"kind": kind, "input_dim": width(), "hidden": hidden, "output_dim": width()}
        units = n + 1
    else:
        heads = draw(st.sampled_from([1, 2, 3, 8]))
        lo, top = int_range(ModelSpec, "d_model")
        layers = field("model.depth", ModelSpec, "layers")
        model = {
            "kind": kind,
            "layers": layers,
            "heads": heads,
            "d_model": heads * size("model.width", 1, top // heads),
            "seq_len": field("model.seq_len", ModelSpec, "seq_len"),
            "vocab": width(),
        }
        units = layers
    model["dtype"] = draw(st.sampled_from(["float32", "bfloat16", "float16"]))

    stages = size("pipeline.stages", 1, units)
    microbatches = field("pipeline.microbatches", PipelineSpec, "microbatches") if stages > 1 else 1
    _, top_batch = int_range(TrainingSpec, "batch_size")
    batch = microbatches * size("training.batch_size", 1, max(1, top_batch // microbatches))
    steps = field("training.steps", TrainingSpec, "steps")
    opt_name = draw(st.sampled_from(["sgd", "adam"]))
    optimizer: dict[str, Any] = {
        "name": opt_name,
        "lr": draw(edge_floats(OptimizerSpec, "lr")),
        "weight_decay": draw(edge_floats(OptimizerSpec, "weight_decay")),
    }
    if opt_name == "sgd":
        optimizer["momentum"] = draw(edge_floats(OptimizerSpec, "momentum"))
    else:
        beta = st.sampled_from([0.0, 0.5, math.nextafter(1.0, 0.0)])
        optimizer["betas"] = [draw(beta), draw(beta)]
        optimizer["eps"] = draw(edge_floats(OptimizerSpec, "eps"))
    training = {
        "batch_size": batch,
        "steps": steps,
        "warmup_steps": draw(st.sampled_from([0, steps - 1, steps // 2])),
        "samples_per_worker": field(
            "training.samples_per_worker", TrainingSpec, "samples_per_worker"
        ),
        "optimizer": optimizer,
    }

    workers = field("cluster.workers.count", WorkersSpec, "count")

    def nic() -> dict[str, float]:
        return {
            "bandwidth_gbps": draw(edge_floats(NicSpec, "bandwidth_gbps")),
            "latency_us": draw(
                edge_floats(NicSpec, "latency_us") | st.sampled_from([MIN_LATENCY_US, 1e-2])
            ),
        }

    lo, top = int_range(ServersSpec, "count")
    servers = draw(edge_ints(lo, top) if "cluster.servers.count" in edge else st.integers(1, 3))
    cluster = {
        "workers": {
            "count": workers,
            "device": draw(st.sampled_from(["cpu", "cuda"])),
            "per_device": size("cluster.workers.per_device", 1, workers),
            "nic": nic(),
        },
        "servers": {"count": servers, "nic": nic()},
        "network": {
            "emulation": "app",
            "fabric_gbps": draw(st.none() | edge_floats(NetworkSpec, "fabric_gbps")),
        },
    }
    mode = draw(st.sampled_from(["bsp", "ssp", "asp"]))
    sync: dict[str, Any] = {"mode": mode}
    if mode == "ssp":
        sync["staleness"] = field("sync.staleness", SyncSpec, "staleness")
    comp = draw(st.sampled_from(["none", "topk", "int8"]))
    compression: dict[str, Any] = {"kind": comp}
    if comp == "topk":
        compression["ratio"] = draw(edge_floats(CompressionSpec, "ratio"))
    step_time = draw(st.none() | edge_floats(ComputeSpec, "step_time_s")) if stages == 1 else None
    dist = draw(st.sampled_from(["none", "lognormal", "exponential"]))
    slowdown = {
        w: draw(st.sampled_from([1.0, 2.0, MAX_SLOWDOWN - 1, MAX_SLOWDOWN]))
        for w in draw(st.sets(edge_ints(0, workers - 1), max_size=3))
    }
    faults = [
        {
            "at_step": draw(edge_ints(0, steps - 1)),
            "worker": w,
            "restart_after_s": draw(st.none() | edge_floats(FaultSpec, "restart_after_s")),
        }
        for w in draw(st.sets(edge_ints(0, workers - 1), max_size=3))
    ]
    return {
        "name": "edge",
        "seed": draw(st.sampled_from([0, 1, 2**32 - 1])),
        "model": model,
        "training": training,
        "cluster": cluster,
        "compute": {"step_time_s": step_time, "profile": "none"},
        "sync": sync,
        "sharding": {
            "policy": draw(st.sampled_from(["range", "round_robin", "greedy_bytes"])),
            "partition_bytes": draw(
                edge_ints(*int_range(ShardingSpec, "partition_bytes"))
                if "sharding.partition_bytes" in edge
                else st.sampled_from([64, 4096, 4_000_000])
            ),
        },
        "communication": {
            "wire_dtype": draw(st.sampled_from(["float32", "float16", "bfloat16"])),
            "compression": compression,
            "overlap": draw(st.booleans()) if stages == 1 and step_time is None else False,
        },
        "stragglers": {
            "slowdown": slowdown,
            "jitter": {
                "distribution": dist,
                "cv": 0.0 if dist == "none" else draw(edge_floats(JitterSpec, "cv", True)),
            },
        },
        "pipeline": {
            "stages": stages,
            "microbatches": microbatches,
            "schedule": draw(st.sampled_from(["gpipe", "1f1b"])),
            "partition": draw(st.sampled_from(["balanced", "uniform"])),
        },
        "faults": faults,
    }


# ------------------------------------------------------------------------- one draw, in a child
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _child(data: dict[str, Any]) -> dict[str, Any]:
    """Validate and simulate `data` here (a forked child, limits lowered): what happened."""
    for name, value in TEST_LIMITS.items():
        setattr(estimates, name, value)
    vm = _status_kb("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (int(vm + MEMORY_BUDGET), int(vm + MEMORY_BUDGET)))
    try:
        scn = scenario_from_dict(data, "edge.yaml")
    except ScenarioError as exc:
        return {"outcome": "refused", "lines": exc.lines()}
    est_events = estimates.sim_events(scn).value
    est_memory = estimates.sim_memory_bytes(scn).value
    est_time = estimates.sim_duration_s(scn).value
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS mark: measure this run's peak only
        rss0 = _status_kb("VmRSS") * 1024
    except OSError:  # not allowed here: the peak so far is the base (the check gets looser)
        rss0 = _status_kb("VmHWM") * 1024
    t0 = time.perf_counter()
    _, extra = simulate(scn)
    return {
        "outcome": "ran",
        "wall_s": time.perf_counter() - t0,
        "events": extra["events"] + extra["messages"],
        "est_events": est_events,
        "memory": _status_kb("VmHWM") * 1024 - rss0,
        "est_memory": est_memory,
        "simulated_s": extra["simulated_time_s"],
        "est_simulated_s": est_time,
    }


def run_draw(data: dict[str, Any]) -> dict[str, Any]:
    """`_child(data)` in a forked process, killed after BUDGET_S."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one JSON line, never return into pytest
        os.close(r)
        try:
            out = _child(data)
        except BaseException as exc:  # noqa: BLE001 - the child reports whatever happened
            out = {
                "outcome": "crashed",
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "traceback": traceback.format_exc()[-4000:],
            }
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks, deadline = [], time.monotonic() + BUDGET_S
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                return {"outcome": "timed out", "error": f"no end within {BUDGET_S} s"}
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if not chunks:
        return {"outcome": "crashed", "error": f"child died (wait status {status})"}
    return json.loads(b"".join(chunks))


# --------------------------------------------------------------------------------------- the test
STATS: Counter[str] = Counter()


def check_draw(data: dict[str, Any]) -> None:
    out = run_draw(data)
    STATS[out["outcome"]] += 1
    if out["outcome"] == "refused":
        assert out["lines"] and all(
            line.startswith("error: edge.yaml: ") and "\n" not in line for line in out["lines"]
        ), out
        return
    assert out["outcome"] == "ran", (out, data)
    STATS["events"] += out["events"]
    assert out["events"] <= out["est_events"], ("events above the estimate", out, data)
    assert out["memory"] <= out["est_memory"] + MEMORY_SLACK, ("memory above the estimate", out)
    assert out["simulated_s"] < SAFE_CLOCK_S, ("simulated time out of the safe range", out, data)
    STATS["max_wall_ms"] = max(STATS["max_wall_ms"], int(1000 * out["wall_s"]))


def test_edge_scenarios_are_refused_or_run_to_their_end() -> None:
    STATS.clear()
    t0 = time.perf_counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(edge_scenarios())
    def draws(data: dict[str, Any]) -> None:
        check_draw(data)

    draws()
    took = time.perf_counter() - t0
    ran, refused = STATS["ran"], STATS["refused"]
    print(
        f"\nvalidation edges: {ran + refused} inputs, {ran} simulated to their end "
        f"({STATS['events']} events and messages, slowest {STATS['max_wall_ms']} ms), {refused} "
        f"refused at validation, none crashed, timed out or exceeded its estimate ({took:.1f} s)",
        file=sys.stderr if os.environ.get("EDGES_VERBOSE") else sys.stdout,
    )
    assert ran > EXAMPLES // 5, f"too few draws simulated ({STATS}): the edges test little"
    assert refused > EXAMPLES // 10, f"too few draws refused ({STATS}): the edges are not reached"


def test_every_number_of_the_format_has_an_upper_bound() -> None:
    """The class of the problem: a number without an upper bound is one a backend may not run."""
    missing = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            text = str(ann)
            subs = [
                a
                for a in (ann, *getattr(ann, "__args__", ()))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            if subs:
                walk(subs[0], f"{prefix}{name}.")
                continue
            if ("int" in text or "float" in text) and "Literal" not in text:
                tops = [m for m in f.metadata if isinstance(m, (at.Le, at.Lt, at.MaxLen))]
                if not tops and "Annotated" not in text:
                    missing.append(f"{prefix}{name}")
                elif f.description is None or "Range:" not in f.description:
                    missing.append(f"{prefix}{name} (its description states no range)")

    walk(Scenario, "")
    assert missing == []
