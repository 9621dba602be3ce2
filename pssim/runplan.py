"""The run plan: everything both backends derive from a scenario, computed once (`derive`).

A scenario fixes the model's units (`pssim.workload`), the pipeline's stage cut (which units each
stage holds, `pssim.costs.stage_unit_bounds`), the shard plan (which partitions each shard holds,
`pssim.sharding`), the topology (which shards each worker process talks to and how large each
message is), each stage's schedule of microbatch actions (`pssim.pipeline`), the links as fluid
resources (`pssim.layout.LinkLayout`) and, for a given number of cores and GPUs, the placement of
every process (`pssim.layout.placement`). The simulator and psreal both take them from one
`RunPlan`, so they cannot derive them differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import wire
from .costs import stage_unit_bounds
from .layout import LinkLayout, Placement, link_layout, placement
from .pipeline import Action
from .pipeline import schedule as make_schedule
from .sharding import ShardPlan, plan_shards
from .workload import DTYPE_BYTES, Workload, build_workload

if TYPE_CHECKING:
    from .scenario import Scenario


@dataclass(frozen=True)
class Topology:
    """Who talks to whom, and message sizes (derived once from the scenario)."""

    n_procs: int
    shards_of: list[list[int]]  # proc -> shards holding its parameters
    pushers_of: list[list[int]]  # shard -> procs that push to it
    part_numels: list[list[list[int]]]  # [proc][shard] -> partition sizes of that proc's slice
    push_bytes: list[list[int]]  # [proc][shard] -> push message bytes
    pull_bytes: list[list[int]]  # [proc][shard] -> reply message bytes
    shard_numel: list[int]
    shard_parts: list[list[int]]


@dataclass(frozen=True)
class RunPlan:
    """What a scenario fixes of a run, whatever runs it (see the module doc). Worker process p
    is replica p // stages, stage p % stages; endpoints are worker processes 0..P-1, then the
    shards."""

    scenario: Scenario
    workload: Workload
    bounds: tuple[tuple[int, int], ...]  # [stage] -> (first unit, end unit)
    shards: ShardPlan
    topology: Topology
    schedule: tuple[tuple[Action, ...], ...]  # [stage] -> its microbatch actions, in order
    links: LinkLayout
    act_bytes: tuple[int, ...]  # [stage] -> message bytes of one microbatch's activations out

    @property
    def n_procs(self) -> int:
        return self.topology.n_procs

    def placement(self, cores: int | None = None, gpus: int | None = None) -> Placement:
        """Device and core of every process on `cores` cores and `gpus` GPUs (None: one each)."""
        return placement(self.scenario, cores, gpus)


def derive(scn: Scenario) -> RunPlan:
    """The run plan of `scn`."""
    bounds = tuple(stage_unit_bounds(scn))
    wl = build_workload(scn.model)
    shards = plan_shards(scn)
    topo = topology(scn, bounds, shards)
    p = scn.pipeline
    mb = scn.training.batch_size // p.microbatches
    wb = DTYPE_BYTES[scn.communication.wire_dtype]
    act_bytes = tuple(
        wire.message_bytes(mb * wl.units[b - 1].out_elems_per_sample * wb) for _, b in bounds
    )
    return RunPlan(
        scenario=scn,
        workload=wl,
        bounds=bounds,
        shards=shards,
        topology=topo,
        schedule=tuple(tuple(acts) for acts in make_schedule(p.schedule, p.stages, p.microbatches)),
        links=link_layout(scn, topo.n_procs),
        act_bytes=act_bytes,
    )


def topology(scn: Scenario, bounds: Sequence[tuple[int, int]], plan: ShardPlan) -> Topology:
    """Who talks to which shard and the size of every message, per worker process and shard."""
    W, P, S = scn.cluster.workers.count, scn.pipeline.stages, scn.cluster.servers.count
    comm = scn.communication
    n_procs = W * P
    # every replica's stage k holds the same slice: derive it once per stage and share the lists
    per_stage = []
    for a, b in bounds:
        parts = [[q.numel for q in plan.shards[s] if a <= q.unit < b] for s in range(S)]
        per_stage.append(
            (
                [s for s in range(S) if parts[s]],
                parts,
                [
                    wire.message_bytes(
                        wire.push_payload_bytes(
                            parts[s], comm.wire_dtype, comm.compression.kind, comm.compression.ratio
                        )
                    )
                    for s in range(S)
                ],
                [
                    wire.message_bytes(wire.dense_payload_bytes(sum(parts[s]), comm.wire_dtype))
                    for s in range(S)
                ],
            )
        )
    shards_of = [per_stage[p % P][0] for p in range(n_procs)]
    pushers = [[p for p in range(n_procs) if s in shards_of[p]] for s in range(S)]
    return Topology(
        n_procs=n_procs,
        shards_of=shards_of,
        pushers_of=pushers,
        part_numels=[per_stage[p % P][1] for p in range(n_procs)],
        push_bytes=[per_stage[p % P][2] for p in range(n_procs)],
        pull_bytes=[per_stage[p % P][3] for p in range(n_procs)],
        shard_numel=[sum(q.numel for q in plan.shards[s]) for s in range(S)],
        shard_parts=[[q.numel for q in plan.shards[s]] for s in range(S)],
    )
