"""pssim's discrete-event model: `simulate(scenario)` -> (Records, extra keys for summary.json).

The entities live in `model.py` (Worker, ServerShard), the target cluster's links and devices in
`resources.py` (Network, Processors) and the host model, which the HERE view adds for psreal's
run on this machine, in `host.py`. This module derives the topology (who talks to which shard,
message sizes) from the shared sharding plan, builds the entities on the resources the cost
model's view asks for (`build_resources`), runs SimPy to the end of the last step and collects
what the records alone cannot say (simulated time, SimPy event and message counts, modelled peak
memory, the view and where the costs came from).
"""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any

import simpy

from ..costs import CostModel, build_costs
from ..layout import Placement
from ..records import Records
from ..runplan import RunPlan, derive
from ..workload import DTYPE_BYTES
from .clock import scheduled_events
from .host import build_host
from .model import SimModel
from .resources import Network, Processors

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = ["simulate"]


def modelled_peak_memory(plan: RunPlan) -> dict[str, int]:
    """Bytes a worker process / server holds at its peak (parameters, gradients, activations,
    buffers)."""
    scn, wl, topo = plan.scenario, plan.workload, plan.topology
    eb = DTYPE_BYTES[scn.model.dtype]
    P, M, B = scn.pipeline.stages, scn.pipeline.microbatches, scn.training.batch_size
    out: dict[str, int] = {}
    for k, (a, b) in enumerate(plan.bounds):
        units = wl.units[a:b]
        numel = sum(u.numel for u in units)
        in_flight = 1 if P == 1 else (M if scn.pipeline.schedule == "gpipe" else min(P - k, M))
        mb = B // M if P > 1 else B
        act = sum(u.saved_elems_per_sample for u in units) * mb * in_flight * eb
        procs = [p for p in range(topo.n_procs) if p % P == k]
        wire_buf = max(sum(topo.push_bytes[p]) + sum(topo.pull_bytes[p]) for p in procs)
        out["worker" if P == 1 else f"stage{k}"] = int(2 * numel * eb + act + wire_buf)
    opt = scn.training.optimizer
    state = 2 if opt.name == "adam" else 1 if opt.momentum > 0 else 0
    acc = 1 if scn.sync.mode == "bsp" else 0
    wb = DTYPE_BYTES[scn.communication.wire_dtype]
    out["server"] = int(max(n * (4 * (1 + state + acc) + wb) for n in topo.shard_numel))
    return out


def build_resources(
    env: simpy.Environment, plan: RunPlan, costs: CostModel, place: Placement
) -> tuple[Network, Processors]:
    """The links and devices a simulation runs on: the target cluster's, or, where the costs
    carry a host model (the HERE view), psreal's run on this host (`pssim.sim.host`)."""
    if costs.host_model() is None:
        return Network(env, plan.links), Processors(env, plan.scenario, place)
    return build_host(env, plan.scenario, costs, place, plan.links)


def simulate(
    scn: Scenario, costs: CostModel | None = None, draw: int = 0
) -> tuple[Records, dict[str, Any]]:
    """Run the scenario in the simulator. Deterministic: same scenario and draw, same records.
    Draws differ only in the compute's natural variation (`pssim.draws.natural_factors`)."""
    wall0 = time.perf_counter()
    costs = costs or build_costs(scn)
    plan = derive(scn)
    place = plan.placement(costs.cores)
    env = simpy.Environment()
    net, procs = build_resources(env, plan, costs, place)
    model = SimModel(env, plan, costs, place, net, procs, draw)
    # the run ends when every worker has finished its last step and every shard has applied
    # every gradient (so the last step's gradients have their staleness recorded too)
    workers_done = simpy.AllOf(env, [w.proc for w in model.workers])
    finished_at: list[float] = []  # simulated_time_s: when the last worker process finished
    workers_done.callbacks.append(lambda _ev: finished_at.append(env.now))  # type: ignore[union-attr]
    done = simpy.AllOf(env, [workers_done] + [s.drained for s in model.servers])
    # the run allocates millions of small records and no garbage cycles worth chasing meanwhile:
    # the cyclic collector would rescan every live record again and again (quadratic in run length)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        env.run(until=done)
    finally:
        if gc_was_enabled:
            gc.enable()
    events = scheduled_events(env)
    rec = model.finish()
    extra = {
        "backend": "sim",
        "simulated_time_s": float(finished_at[0]),
        "events": int(events),
        "messages": net.messages,
        "view": costs.view,
        "compute_source": costs.source,
        "cost_sources": costs.cost_sources(),
        "host_model": costs.host_model(),
        "peak_memory_bytes": modelled_peak_memory(plan),
        "cpu_seconds": procs.cpu_seconds(),
        "cpu_seconds_by_role": procs.cpu_seconds_by_role(),
        "wall_time_s": time.perf_counter() - wall0,
    }
    if costs.profile_path:
        extra["profile"] = costs.profile_path
    return rec, extra
