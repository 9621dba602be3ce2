"""Where a run's processes are and how they are linked: the placement of every process on
devices and cores (`placement`) and the network as fluid resources (`link_layout`). Both backends
take them from the run plan (`pssim.runplan`): psreal pins its processes and emulates its links
by them, and pssim models each core, device and NIC direction by them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scenario import Scenario


def link_capacities_bytes_per_s(scn: Scenario) -> dict[str, float]:
    c = scn.cluster
    out = {"worker": c.workers.nic.bytes_per_s, "server": c.servers.nic.bytes_per_s}
    if c.network.fabric_gbps:
        out["fabric"] = c.network.fabric_gbps * 125e6
    return out


@dataclass(frozen=True)
class Placement:
    """Device and core of every process. Worker process p = replica * stages + stage.

    Logical device of p: (replica // per_device) * stages + stage (`per_device` replicas share a
    device; each pipeline stage has its own). On CUDA, logical devices map round robin onto the
    physical GPUs when their number is known (a profile records it); on CPU with a known core
    count, a device *is* a core (logical device mod cores), and servers take the next cores.
    """

    n_devices: int
    device_of_proc: tuple[int, ...]
    core_of_proc: tuple[int, ...] | None  # None: each process has a core of its own
    core_of_server: tuple[int, ...] | None
    cores: int | None


def placement(scn: Scenario, cores: int | None, gpus: int | None = None) -> Placement:
    W, P = scn.cluster.workers.count, scn.pipeline.stages
    per = scn.cluster.workers.per_device
    n_logical = -(-W // per) * P
    logical = [(w // per) * P + s for w in range(W) for s in range(P)]
    S = scn.cluster.servers.count
    cpu = scn.cluster.workers.device == "cpu"
    if not cpu and gpus:
        dev, n_dev = tuple(d % gpus for d in logical), min(n_logical, gpus)
    else:
        dev, n_dev = tuple(logical), n_logical
    if cores is None:
        return Placement(n_dev, dev, None, None, None)
    if cpu:
        core_p = tuple(d % cores for d in logical)
        core_s = tuple((n_logical + s) % cores for s in range(S))
    else:  # GPU workers: each process its own host core, round robin
        core_p = tuple(p % cores for p in range(W * P))
        core_s = tuple((W * P + s) % cores for s in range(S))
    return Placement(n_dev, dev, core_p, core_s, cores)


@dataclass(frozen=True)
class LinkLayout:
    """The network as fluid resources. Endpoints: worker processes 0..P-1, then servers P..P+S-1.

    Worker process p has egress 2p and ingress 2p+1, server s egress 2(P+s) and ingress 2(P+s)+1,
    and the fabric, if any, is the last resource. A message from a to b crosses a's egress, b's
    ingress and the fabric, and pays the larger one-way latency of its two endpoints once.
    """

    caps: list[float]
    names: list[str]
    n_procs: int
    fabric: int | None
    lat_w: float
    lat_s: float

    def resources_of(self, src: int, dst: int) -> tuple[int, ...]:
        if self.fabric is None:
            return (2 * src, 2 * dst + 1)
        return (2 * src, 2 * dst + 1, self.fabric)

    def delay_of(self, src: int, dst: int) -> float:
        a = self.lat_s if src >= self.n_procs else self.lat_w
        b = self.lat_s if dst >= self.n_procs else self.lat_w
        return max(a, b)


def link_layout(scn: Scenario, n_procs: int) -> LinkLayout:
    c = scn.cluster
    bw_w, bw_s = c.workers.nic.bytes_per_s, c.servers.nic.bytes_per_s
    caps: list[float] = []
    names: list[str] = []
    for p in range(n_procs):
        caps += [bw_w, bw_w]
        names += [f"worker{p}.egress", f"worker{p}.ingress"]
    for s in range(c.servers.count):
        caps += [bw_s, bw_s]
        names += [f"server{s}.egress", f"server{s}.ingress"]
    fabric = None
    if c.network.fabric_gbps:
        fabric = len(caps)
        caps.append(c.network.fabric_gbps * 125e6)
        names.append("fabric")
    return LinkLayout(
        caps,
        names,
        n_procs,
        fabric,
        c.workers.nic.latency_us * 1e-6,
        c.servers.nic.latency_us * 1e-6,
    )
