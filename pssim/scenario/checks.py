"""The cross-section rules of a scenario: those that relate fields of different sections.

Each rule is registered with `_cross_check`, naming the sections it reads; `Scenario` runs them
all, and `_cross_problems_of_valid_sections` runs those whose sections validated when some other
section did not, so that every independent problem is reported at once.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .bounds import MAX_PARTITIONS, _num
from .errors import _FieldProblem, _MultiProblem
from .estimates import (
    Estimate,
    human_bytes,
    named_profile,
    partition_count,
    real_memory_bytes,
    sim_duration_s,
    sim_events,
    sim_memory_bytes,
    workload,
)
from .schema import _CROSS_CHECKS, ModelSpec, Scenario, _cross_check, _Sections


@_cross_check("stragglers", "cluster")
def _check_straggler_workers(s: _Sections) -> list[tuple[str, str]]:
    W = s.cluster.workers.count
    return [
        (
            f"stragglers.slowdown.{w}",
            f"no such worker: must be < cluster.workers.count={W} (got {w})",
        )
        for w in s.stragglers.slowdown
        if w >= W
    ]


@_cross_check("faults", "cluster")
def _check_fault_workers(s: _Sections) -> list[tuple[str, str]]:
    W = s.cluster.workers.count
    return [
        (
            f"faults.{i}.worker",
            f"no such worker: must be < cluster.workers.count={W} (got {f.worker})",
        )
        for i, f in enumerate(s.faults)
        if f.worker >= W
    ]


@_cross_check("faults", "training")
def _check_fault_steps(s: _Sections) -> list[tuple[str, str]]:
    n = s.training.steps
    return [
        (f"faults.{i}.at_step", f"must be < training.steps={n} (got {f.at_step})")
        for i, f in enumerate(s.faults)
        if f.at_step >= n
    ]


@_cross_check("faults")
def _check_fault_order(s: _Sections) -> list[tuple[str, str]]:
    out, seen, gone = [], set(), {}
    for i, f in enumerate(s.faults):
        if (f.worker, f.at_step) in seen:
            out.append((f"faults.{i}", f"worker {f.worker} already crashes at step {f.at_step}"))
        seen.add((f.worker, f.at_step))
        if f.restart_after_s is None:
            gone[f.worker] = min(gone.get(f.worker, f.at_step), f.at_step)
    for i, f in enumerate(s.faults):
        if f.worker in gone and f.at_step > gone[f.worker]:
            out.append(
                (
                    f"faults.{i}.at_step",
                    f"worker {f.worker} crashed for good at step {gone[f.worker]} "
                    f"(got {f.at_step})",
                )
            )
    return out


@_cross_check("pipeline", "model")
def _check_stages(s: _Sections) -> list[tuple[str, str]]:
    units = len(workload(s.model).units)
    if s.pipeline.stages > units:
        return [
            ("pipeline.stages", f"must be <= the model's {units} layers (got {s.pipeline.stages})")
        ]
    return []


@_cross_check("pipeline", "training")
def _check_microbatches(s: _Sections) -> list[tuple[str, str]]:
    B, M = s.training.batch_size, s.pipeline.microbatches
    if B % M != 0:
        return [("pipeline.microbatches", f"must divide training.batch_size={B} (got {M})")]
    return []


@_cross_check("communication", "pipeline")
def _check_overlap(s: _Sections) -> list[tuple[str, str]]:
    if s.communication.overlap and s.pipeline.stages > 1:
        return [
            (
                "communication.overlap",
                f"is not supported with pipeline.stages > 1 (got stages={s.pipeline.stages})",
            )
        ]
    return []


@_cross_check("communication", "compute")
def _check_overlap_compute(s: _Sections) -> list[tuple[str, str]]:
    if s.communication.overlap and s.compute.step_time_s is not None:
        return [
            (
                "communication.overlap",
                "needs the backward pass's timeline, which compute.step_time_s does not give; "
                "leave step_time_s null (profile or catalog roofline)",
            )
        ]
    return []


@_cross_check("compute", "pipeline")
def _check_step_time(s: _Sections) -> list[tuple[str, str]]:
    if s.compute.step_time_s is not None and s.pipeline.stages > 1:
        return [
            (
                "compute.step_time_s",
                f"is per whole model and cannot be split over pipeline.stages={s.pipeline.stages}; "
                "leave it null (profile or catalog roofline)",
            )
        ]
    return []


def _partition_count(model: ModelSpec, partition_bytes: int) -> tuple[int, int, int]:
    """(partitions the parameters are cut into, the smallest partition_bytes that stays within
    MAX_PARTITIONS, parameter tensors)."""
    from ..workload import DTYPE_BYTES

    eb = DTYPE_BYTES[model.dtype]
    numels = [p.numel for p in workload(model).params]
    n = partition_count(model, partition_bytes)
    least = eb * -(-sum(numels) // max(1, MAX_PARTITIONS - len(numels)))
    return n, least, len(numels)


@_cross_check("model", "sharding")
def _check_partition_count(s: _Sections) -> list[tuple[str, str]]:
    pb = s.sharding.partition_bytes
    n, least, tensors = _partition_count(s.model, pb)
    if tensors >= MAX_PARTITIONS:
        field = "model.layers" if s.model.kind == "transformer" else "model.hidden"
        return [
            (
                field,
                f"gives the model {tensors} parameter tensors, each at least one partition: "
                f"more than {MAX_PARTITIONS} partitions; use fewer layers",
            )
        ]
    if n > MAX_PARTITIONS:
        return [
            (
                "sharding.partition_bytes",
                f"cuts the model into {n} partitions, more than {MAX_PARTITIONS}; "
                f"use >= {least} (got {pb})",
            )
        ]
    return []


def _first_empty_shard(model: ModelSpec, partition_bytes: int, S: int, policy: str) -> int | None:
    """The first shard pssim.sharding.place leaves empty (None: none), in O(partitions) and
    without building the plan. round_robin and greedy_bytes fill every shard when there are at
    least as many partitions (greedy places the S largest on the S empty shards first); range
    places each partition by the byte midpoint, as `place` computes it."""
    from ..workload import DTYPE_BYTES

    per = max(1, partition_bytes // DTYPE_BYTES[model.dtype])
    numels = [p.numel for p in workload(model).params]
    if policy == "range":
        return _range_empty(numels, per, S)
    n = sum(-(-k // per) for k in numels)
    return n if n < S else None


def _range_empty(numels: list[int], per: int, S: int) -> int | None:
    total = sum(numels)
    hit = bytearray(S)
    acc = 0
    for k in numels:
        for size in [per] * (k // per) + ([k % per] if k % per else []):
            mid = acc + size / 2
            hit[min(S - 1, int(mid * S // total)) if total else 0] = 1
            acc += size
    first = hit.find(0)
    return None if first < 0 else first


@_cross_check("model", "sharding", "cluster")
def _check_empty_shards(s: _Sections) -> list[tuple[str, str]]:
    pb, S, policy = s.sharding.partition_bytes, s.cluster.servers.count, s.sharding.policy
    n, _, tensors = _partition_count(s.model, pb)
    if n > MAX_PARTITIONS or tensors >= MAX_PARTITIONS:
        return []  # reported by _check_partition_count
    empty = _first_empty_shard(s.model, pb, S, policy)
    if empty is None:
        return []
    if n < S:
        msg = (
            f"must be <= {n}, the number of parameter partitions at "
            f"sharding.partition_bytes={pb}, or a shard is left empty (got {S}); "
            "lower partition_bytes or use fewer servers"
        )
    else:
        msg = (
            f"shard {empty} would hold no parameters under sharding.policy={policy} "
            f"with {n} partitions (got {S} servers); "
            "lower sharding.partition_bytes, use fewer servers or another policy"
        )
    return [("cluster.servers.count", msg)]


# --------------------------------------------------------------------------- what a run costs
# Estimates over several fields (pssim.scenario.estimates), each O(fields): a scenario that
# validates runs to its end in the simulator and in psreal, within memory and in bounded time.
def _over(e: Estimate, what: str, limit: str) -> list[tuple[str, str]]:
    """`what` (with the estimate in it) and `limit` said as one problem, if over the limit."""
    if not e.over:
        return []
    return [(e.path, f"{what} ({e.how}), more than {limit}; lower this or the other fields named")]


@_cross_check("model", "training", "cluster", "pipeline", "sharding")
def _check_sim_memory(s: _Sections) -> list[tuple[str, str]]:
    e = sim_memory_bytes(s)
    return _over(
        e,
        f"the simulator would hold about {human_bytes(e.value)}",
        f"the limit of {human_bytes(e.limit)}",
    )


@_cross_check("model", "training", "cluster", "pipeline", "sharding", "communication", "compute")
def _check_sim_events(s: _Sections) -> list[tuple[str, str]]:
    e = sim_events(s)
    return _over(
        e,
        f"the simulation would take about {e.value:.3g} events and messages",
        f"the limit of {_num(e.limit)} (hours of simulation)",
    )


@_cross_check(
    "model",
    "training",
    "cluster",
    "compute",
    "stragglers",
    "communication",
    "pipeline",
    "faults",
    "sharding",
)
def _check_sim_duration(s: _Sections) -> list[tuple[str, str]]:
    if isinstance(named_profile(s.compute.profile), str):
        return []  # reported on compute.profile
    e = sim_duration_s(s)
    return _over(
        e,
        f"the run would reach about {e.value:.3g} s of simulated time",
        f"the {_num(e.limit)} s the simulator's clock keeps exact",
    )


@_cross_check("model", "training", "cluster", "pipeline", "sync", "communication", "sharding")
def _check_real_memory(s: _Sections) -> list[tuple[str, str]]:
    one, total = real_memory_bytes(s)
    return _over(
        one,
        f"psreal: one process would hold about {human_bytes(one.value)}",
        f"the limit of {human_bytes(one.limit)} (more than a machine has)",
    ) + _over(
        total,
        f"psreal: its processes would hold about {human_bytes(total.value)} in all",
        f"the limit of {human_bytes(total.limit)}",
    )


@_cross_check("compute", "pipeline")
def _check_profile_stages(s: _Sections) -> list[tuple[str, str]]:
    prof = named_profile(s.compute.profile)
    P = s.pipeline.stages
    if prof is None or isinstance(prof, str) or P == 1 or len(prof.stage_fwd_s) == P:
        return []
    return [
        (
            "compute.profile",
            f"{s.compute.profile} measured {len(prof.stage_fwd_s)} pipeline stages, "
            f"not pipeline.stages={P}; profile this scenario (psreal profile) or use auto",
        )
    ]


def _cross_problems_of_valid_sections(
    data: dict[str, Any], failed: set[str]
) -> list[tuple[str, str]]:
    """The cross-section rules over the sections that validate on their own (see _CROSS_CHECKS)."""
    sections: dict[str, Any] = {}
    for name, info in Scenario.model_fields.items():
        if name in failed:
            continue
        raw = data[name] if name in data else info.get_default(call_default_factory=True)
        try:
            sections[name] = TypeAdapter(info.annotation).validate_python(raw, strict=True)
        except (ValidationError, _FieldProblem, _MultiProblem):
            continue
    ns = SimpleNamespace(**sections)
    out: list[tuple[str, str]] = []
    for needs, check in _CROSS_CHECKS:
        if needs <= sections.keys():
            out += check(ns)
    return out
