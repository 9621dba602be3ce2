"""How parameters are cut into partitions and placed on the PS shards, for both backends alike.

Each parameter tensor (flattened, in the order of `Workload.params` from
`pssim.workload.build_workload`) is cut into contiguous partitions of at most
`sharding.partition_bytes` bytes (in the model dtype). Partitions are then placed on shards:

- `range`: the partition sequence is cut into `servers.count` contiguous runs of about equal bytes
  (partition i goes to the shard in whose byte range its midpoint falls);
- `round_robin`: partition i goes to shard i mod S;
- `greedy_bytes`: largest partition first, each to the shard with the fewest bytes so far
  (ties to the lowest shard index).

A pipeline stage only talks to the shards that hold its parameters: each partition records its
model unit, `pssim.costs.stage_unit_bounds` says which units each stage holds, and
`pssim.runplan.topology` derives from both which shards each stage talks to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .workload import DTYPE_BYTES, build_workload

if TYPE_CHECKING:
    from .scenario import Scenario


@dataclass(frozen=True)
class Partition:
    """A contiguous slice [offset, offset+numel) of the flattened parameter `param`."""

    index: int
    param: int  # index into the workload's parameter list
    name: str
    offset: int
    numel: int
    unit: int  # the model unit (layer) the parameter belongs to


@dataclass(frozen=True)
class ShardPlan:
    partitions: tuple[Partition, ...]
    shards: tuple[tuple[Partition, ...], ...]  # shard index -> its partitions, in partition order
    elem_bytes: int

    @property
    def n_partitions(self) -> int:
        return len(self.partitions)

    def shard_numel(self, shard: int, units: range | None = None) -> int:
        return sum(p.numel for p in self.shards[shard] if units is None or p.unit in units)

    def shard_bytes(self, shard: int) -> int:
        return self.shard_numel(shard) * self.elem_bytes


def cut_partitions(
    numels: list[int], names: list[str], units: list[int], elem_bytes: int, partition_bytes: int
) -> list[Partition]:
    per = max(1, partition_bytes // elem_bytes)
    parts: list[Partition] = []
    for pi, (n, name, unit) in enumerate(zip(numels, names, units, strict=True)):
        off = 0
        while off < n:
            k = min(per, n - off)
            parts.append(Partition(len(parts), pi, name, off, k, unit))
            off += k
    return parts


def place(parts: list[Partition], n_shards: int, policy: str) -> list[list[Partition]]:
    shards: list[list[Partition]] = [[] for _ in range(n_shards)]
    if policy == "round_robin":
        for p in parts:
            shards[p.index % n_shards].append(p)
    elif policy == "range":
        total = sum(p.numel for p in parts)
        acc = 0
        for p in parts:
            mid = acc + p.numel / 2
            s = min(n_shards - 1, int(mid * n_shards // total)) if total else 0
            shards[s].append(p)
            acc += p.numel
    elif policy == "greedy_bytes":
        load = [0] * n_shards
        for p in sorted(parts, key=lambda q: (-q.numel, q.index)):
            s = min(range(n_shards), key=lambda i: (load[i], i))
            shards[s].append(p)
            load[s] += p.numel
        for s in shards:
            s.sort(key=lambda q: q.index)
    else:  # pragma: no cover - the schema refuses other values
        raise ValueError(f"unknown sharding policy {policy!r}")
    return shards


def plan_shards(scn: Scenario) -> ShardPlan:
    return _plan_cached(
        scn.model.model_dump_json(),
        scn.sharding.policy,
        scn.sharding.partition_bytes,
        scn.cluster.servers.count,
    )


@lru_cache(maxsize=64)
def _plan_cached(model_json: str, policy: str, partition_bytes: int, n_shards: int) -> ShardPlan:
    from .scenario.schema import ModelSpec

    model = ModelSpec.model_validate_json(model_json)
    wl = build_workload(model)
    eb = DTYPE_BYTES[model.dtype]
    ps = wl.params
    parts = cut_partitions(
        [p.numel for p in ps], [p.name for p in ps], [p.unit for p in ps], eb, partition_bytes
    )
    shards = place(parts, n_shards, policy)
    return ShardPlan(tuple(parts), tuple(tuple(s) for s in shards), eb)
