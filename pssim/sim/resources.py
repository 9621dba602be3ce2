"""SimPy resources of the model: fluid-shared NICs and fabric (`Network`) and devices and cores (`Processors`).

Both wrap a `FluidSystem` through a `FluidDriver`, which keeps the SimPy clock and the fluid state
in step: a flow start marks the rates stale and schedules one recompute at the current instant
(after every other event already due then, so simultaneous starts cost one recompute), and a
single pending timeout fires at the next completion. Callbacks run at the instant a flow ends.

A message from a to b crosses a's egress, b's ingress and the fabric if any, and is delivered
`latency + per-message overhead` after its last byte drains (DESIGN.md section 4: each message
pays its latency once). Deliveries due at the same instant share one SimPy timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import simpy

from ..fluid import FluidSystem

if TYPE_CHECKING:
    from ..costs import CostModel, Placement
    from ..scenario import Scenario

Callback = Callable[[], None]


class FluidDriver:
    def __init__(self, env: simpy.Environment, system: FluidSystem) -> None:
        self.env = env
        self.sys = system
        self._gen = 0
        self._pending = False
        self._done: dict[int, Callback] = {}
        self._next = 0

    def start(self, resources: tuple[int, ...], amount: float, done: Callback) -> None:
        key = self._next
        self._next += 1
        self._done[key] = done
        self.sys.add(self.env.now, resources, amount, key)
        if not self._pending:
            self._pending = True
            self.env.timeout(0).callbacks.append(self._recompute)

    def _recompute(self, _ev: simpy.Event) -> None:
        self._pending = False
        self.sys.advance(self.env.now)
        self.sys.recompute()
        self._arm()

    def _arm(self) -> None:
        self._gen += 1
        t = self.sys.next_completion()
        if t == np.inf:
            return
        gen = self._gen
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _e: self._complete(gen))

    def _complete(self, gen: int) -> None:
        if gen != self._gen:
            return  # superseded by a later recompute
        for key in self.sys.pop_completed(self.env.now):
            self._done.pop(key)()
        if not self._pending:
            self.sys.recompute()
            self._arm()


class _Batcher:
    """Run callbacks `delay` after now; callbacks due at the same instant share one timeout."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._at = -1.0
        self._due: dict[float, list[Callback]] = {}

    def after(self, delay: float, fn: Callback) -> None:
        if delay <= 0.0:
            fn()
            return
        if self.env.now != self._at:
            self._at = self.env.now
            self._due = {}
        lst = self._due.get(delay)
        if lst is None:
            lst = self._due[delay] = []
            ev = self.env.timeout(delay)
            ev.callbacks.append(lambda _e, fns=lst: [f() for f in fns])
        lst.append(fn)


class Network:
    """Full-duplex NICs for every worker process and server, and the optional fabric.

    Endpoints are ints: worker processes 0..P-1, servers P..P+S-1.
    """

    def __init__(self, env: simpy.Environment, scn: Scenario, n_procs: int, costs: CostModel) -> None:
        S = scn.cluster.servers.count
        bw_w = scn.cluster.workers.nic.bytes_per_s
        bw_s = scn.cluster.servers.nic.bytes_per_s
        caps, names = [], []
        for p in range(n_procs):
            caps += [bw_w, bw_w]
            names += [f"worker{p}.egress", f"worker{p}.ingress"]
        for s in range(S):
            caps += [bw_s, bw_s]
            names += [f"server{s}.egress", f"server{s}.ingress"]
        self.fabric = None
        if scn.cluster.network.fabric_gbps:
            self.fabric = len(caps)
            caps.append(scn.cluster.network.fabric_gbps * 125e6)
            names.append("fabric")
        self.n_procs = n_procs
        self.driver = FluidDriver(env, FluidSystem(caps, names))
        self.batch = _Batcher(env)
        lw = scn.cluster.workers.nic.latency_us * 1e-6
        ls = scn.cluster.servers.nic.latency_us * 1e-6
        ov = costs.msg_overhead_s
        # a message pays the larger endpoint latency once (costs.message_latency_s), plus overhead
        self._delay = {(False, False): lw + ov, (False, True): max(lw, ls) + ov, (True, False): max(lw, ls) + ov, (True, True): ls + ov}

    def send(self, src: int, dst: int, nbytes: int, on_delivered: Callback) -> None:
        res = (2 * src, 2 * dst + 1) if self.fabric is None else (2 * src, 2 * dst + 1, self.fabric)
        delay = self._delay[(src >= self.n_procs, dst >= self.n_procs)]
        self.driver.start(res, float(nbytes), lambda: self.batch.after(delay, on_delivered))


class Processors:
    """Devices and host cores as processor-sharing resources (n jobs on one get 1/n each)."""

    def __init__(self, env: simpy.Environment, scn: Scenario, place: Placement) -> None:
        self.env = env
        cpu = scn.cluster.workers.device == "cpu"
        caps, names = [], []
        self.compute_res: list[int | None] = []
        self.host_res: list[int | None] = []
        self.server_res: list[int | None] = []
        if place.cores is not None:
            core0 = 0
            caps += [1.0] * place.cores
            names += [f"core{c}" for c in range(place.cores)]
            dev0 = None
            if not cpu:
                dev0 = len(caps)
                caps += [1.0] * place.n_devices
                names += [f"gpu{d}" for d in range(place.n_devices)]
            for p, d in enumerate(place.device_of_proc):
                core = core0 + place.core_of_proc[p]  # type: ignore[index]
                self.host_res.append(core)
                self.compute_res.append(core if cpu else dev0 + d)  # type: ignore[operator]
            self.server_res = [core0 + c for c in place.core_of_server]  # type: ignore[union-attr]
        else:
            caps += [1.0] * place.n_devices
            names += [("cpu" if cpu else "gpu") + str(d) for d in range(place.n_devices)]
            for d in place.device_of_proc:
                self.compute_res.append(d)
                self.host_res.append(d if cpu else None)
            self.server_res = [None] * scn.cluster.servers.count
        self.driver = FluidDriver(env, FluidSystem(caps, names))

    def run(self, res: int | None, work_s: float) -> simpy.Event:
        """An event that fires when `work_s` seconds of standalone work have been done on `res`."""
        if res is None or work_s <= 0.0:
            return self.env.timeout(max(work_s, 0.0))
        ev = self.env.event()
        self.driver.start((res,), work_s, ev.succeed)
        return ev
