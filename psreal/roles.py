"""What every role process shares: rank layout, the run context, records and the role base class.

Ranks: 0 is the coordinator (link arbiter, progress, results); 1..S are the server shards;
S+1..S+P are the worker processes (P = workers x pipeline stages, process p = replica * stages +
stage). Endpoints, the names the link model and messages use, are those of the simulator:
worker process p is endpoint p, server s is endpoint P + s.

Testing hook: the environment variable `PSREAL_FAULT` injects failures so that the failure
handling can be tested end to end. It holds comma-separated faults `ROLE:INDEX:step:N:ACTION`:
ROLE is `worker` (INDEX = worker process p, i.e. replica * stages + stage) or `server` (INDEX =
shard);
a worker fires at the start of its step N, a server when the first gradient of step N arrives;
ACTION is `raise` (a RuntimeError), `kill` (SIGKILL to itself), `exit` (os._exit(3) without a
word) or `hang` (sleep forever, for the stall watchdog). A fired fault says so on stderr. Spawned
roles and torchrun ranks inherit the variable; it is meant for tests, never for real runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import torch

from pssim.records import Records
from pssim.runplan import RunPlan, derive
from pssim.scenario import Scenario

from .control import ControlClient
from .transport import Transport


@dataclass(frozen=True)
class Layout:
    n_servers: int
    n_procs: int

    @property
    def world(self) -> int:
        return 1 + self.n_servers + self.n_procs

    def role_of(self, rank: int) -> tuple[str, int]:
        if rank == 0:
            return "coordinator", 0
        if rank <= self.n_servers:
            return "server", rank - 1
        return "worker", rank - 1 - self.n_servers

    def rank_of_endpoint(self, ep: int) -> int:
        return 1 + self.n_servers + ep if ep < self.n_procs else 1 + (ep - self.n_procs)

    def endpoint_of_rank(self, rank: int) -> int:
        kind, i = self.role_of(rank)
        return i if kind == "worker" else self.n_procs + i if kind == "server" else -1

    def describe(self, rank: int, stages: int = 1) -> str:
        kind, i = self.role_of(rank)
        if kind == "worker" and stages > 1:
            w, s = divmod(i, stages)
            return f"worker {w} stage {s} (rank {rank})"
        return f"{kind} {i} (rank {rank})" if kind != "coordinator" else "coordinator (rank 0)"


def layout_of(scn: Scenario) -> Layout:
    return Layout(scn.cluster.servers.count, scn.cluster.workers.count * scn.pipeline.stages)


@dataclass
class RoleContext:
    scn: Scenario
    layout: Layout
    rank: int
    device: str  # cpu | cuda, after fallback
    plan: RunPlan  # what the scenario fixes of the run, as the simulator derives it too
    control: ControlClient
    transport: Transport
    t0: float = 0.0
    records: Records = field(init=False)

    def __post_init__(self) -> None:
        s = self.scn
        self.records = Records(
            s.cluster.workers.count, s.pipeline.stages, s.training.steps, s.cluster.servers.count
        )

    def now(self) -> float:
        return time.monotonic()


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pin_role(scn: Scenario, rank: int, layout: Layout, cores: int) -> int | None:
    """Pin this process to the core `pssim.layout.placement` gives it; returns the core."""
    place = derive(scn).placement(cores)
    kind, i = layout.role_of(rank)
    if kind == "coordinator" or place.core_of_proc is None:
        return None
    core = place.core_of_proc[i] if kind == "worker" else place.core_of_server[i]  # type: ignore[index]
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[core % len(allowed)]
    os.sched_setaffinity(0, {cpu})
    return cpu


def keep_freed_memory() -> None:
    """Let glibc keep freed large blocks for reuse instead of unmapping them.

    A role allocates the same large buffers every step (received payloads, gradients): by default
    glibc serves each from a fresh mmap, so every step page-faults and zeroes them anew (about a
    third of the transport's time for a 16 MB message). With a high mmap threshold and no trimming
    they come back from the heap warm. Peak memory is unchanged; a role's heap just does not shrink.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(-3, 512 << 20)  # M_MMAP_THRESHOLD: blocks below 512 MiB from the heap
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap


def set_threads() -> None:
    # one intra-op thread per role: the placement gives each role one core, as the simulator models
    keep_freed_memory()
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


FAULT_ENV = "PSREAL_FAULT"
FAULT_ACTIONS = ("raise", "kill", "exit", "hang")


def parse_faults(text: str) -> list[tuple[str, int, int, str]]:
    """`worker:1:step:3:kill,server:0:step:2:raise` -> [(role, index, step, action), ...]."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        f = item.split(":")
        if (
            len(f) != 5
            or f[0] not in ("worker", "server")
            or f[2] != "step"
            or f[4] not in FAULT_ACTIONS
        ):
            raise ValueError(
                f"{FAULT_ENV}: expected ROLE:INDEX:step:N:ACTION with ROLE worker|server and "
                f"ACTION {'|'.join(FAULT_ACTIONS)} (got {item!r})"
            )
        out.append((f[0], int(f[1]), int(f[3]), f[4]))
    return out


def inject_fault(role: str, index: int, step: int, who: str) -> None:
    """The `PSREAL_FAULT` testing hook: fire the fault configured for (role, index, step), if
    any."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return
    for r, i, n, action in parse_faults(text):
        if (r, i, n) != (role, index, step):
            continue
        print(f"psreal: {FAULT_ENV}: {who}: {action} at step {step}", file=sys.stderr, flush=True)
        if action == "raise":
            raise RuntimeError(f"fault injected by {FAULT_ENV} at step {step}")
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "exit":
            os._exit(3)
        while True:  # hang
            time.sleep(3600)
