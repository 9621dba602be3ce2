"""The cross-section rules of a scenario: those that relate fields of different sections.

Each rule is registered with `_cross_check`, naming the sections it reads; `Scenario` runs them
all, and `_cross_problems_of_valid_sections` runs those whose sections validated when some other
section did not, so that every independent problem is reported at once.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .errors import _FieldProblem, _MultiProblem
from .schema import _CROSS_CHECKS, MAX_PARTITIONS, ModelSpec, Scenario, _cross_check, _Sections


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
    from ..workload import pipeline_units

    units = pipeline_units(s.model)
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


def _partition_count(model: ModelSpec, partition_bytes: int) -> tuple[int, int]:
    """(partitions the parameters are cut into, the smallest partition_bytes that stays within
    MAX_PARTITIONS)."""
    from ..workload import DTYPE_BYTES, build_workload

    eb = DTYPE_BYTES[model.dtype]
    per = max(1, partition_bytes // eb)  # elements per partition, as sharding.cut_partitions cuts
    numels = [p.numel for p in build_workload(model).params]
    n = sum(-(-k // per) for k in numels)
    least = eb * -(-sum(numels) // max(1, MAX_PARTITIONS - len(numels)))
    return n, least


@_cross_check("model", "sharding")
def _check_partition_count(s: _Sections) -> list[tuple[str, str]]:
    pb = s.sharding.partition_bytes
    n, least = _partition_count(s.model, pb)
    if n > MAX_PARTITIONS:
        return [
            (
                "sharding.partition_bytes",
                f"cuts the model into {n} partitions, more than {MAX_PARTITIONS}; "
                f"use >= {least} (got {pb})",
            )
        ]
    return []


@_cross_check("model", "sharding", "cluster")
def _check_empty_shards(s: _Sections) -> list[tuple[str, str]]:
    from ..sharding import plan_shards

    if _partition_count(s.model, s.sharding.partition_bytes)[0] > MAX_PARTITIONS:
        return []  # reported by _check_partition_count; not worth building
    plan = plan_shards(s)
    S, pb = s.cluster.servers.count, s.sharding.partition_bytes
    empty = [k for k, parts in enumerate(plan.shards) if not parts]
    if not empty:
        return []
    if plan.n_partitions < S:
        msg = (
            f"must be <= {plan.n_partitions}, the number of parameter partitions at "
            f"sharding.partition_bytes={pb}, or a shard is left empty (got {S}); "
            "lower partition_bytes or use fewer servers"
        )
    else:
        msg = (
            f"shard {empty[0]} would hold no parameters under sharding.policy={s.sharding.policy} "
            f"with {plan.n_partitions} partitions (got {S} servers); "
            "lower sharding.partition_bytes, use fewer servers or another policy"
        )
    return [("cluster.servers.count", msg)]


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
