"""The SimPy model of a parameter-server run: ServerShard and Worker processes over Network and Processors.

A worker process runs `training.steps` steps of: pull (a request to each of its shards; replies are
unpacked on its core as they arrive), compute (forward+backward on its device, or the pipeline
stage's schedule of microbatch actions, then any straggler delay), push (pack every shard's
gradient, then send them all at once; the step ends when the last is delivered).

A server shard handles its inbox in arrival order, one message at a time, as psreal's server does:
a push is decoded and accumulated (bsp) or applied (ssp/asp) on the server's core; under bsp the
last gradient of a clock triggers the optimiser update; a pull is answered when `sync.pull_ready`
allows, else held. Replies for one version are packed once and sent to every waiting worker.
Consecutive pushes whose effects release nothing are costed as one job, which gives the same
times as costing them one by one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy

from .. import sync, wire
from ..draws import compute_factors, straggle_delay
from ..records import Records

if TYPE_CHECKING:
    from ..costs import CostModel, Placement
    from ..scenario import Scenario
    from .resources import Network, Processors


@dataclass
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


@dataclass
class ShardState:
    version: int = 0
    clocks: dict[int, int] = field(default_factory=dict)  # pusher proc -> gradients received
    clock_hist: dict[int, int] = field(default_factory=dict)  # clock value -> number of pushers there
    min_clock: int = 0
    bsp_count: dict[int, int] = field(default_factory=dict)  # clock -> gradients summed so far

    def record_push(self, proc: int) -> None:
        c = self.clocks[proc]
        self.clocks[proc] = c + 1
        self.clock_hist[c] -= 1
        self.clock_hist[c + 1] = self.clock_hist.get(c + 1, 0) + 1
        while self.clock_hist.get(self.min_clock, 0) == 0:
            self.clock_hist.pop(self.min_clock, None)
            self.min_clock += 1


class ServerShard:
    def __init__(self, model: SimModel, shard: int) -> None:
        self.m = model
        self.s = shard
        self.endpoint = model.topo.n_procs + shard
        self.core = model.procs.server_res[shard]
        pushers = model.topo.pushers_of[shard]
        self.state = ShardState(clocks={p: 0 for p in pushers}, clock_hist={0: len(pushers)})
        self.n_pushers = len(pushers)
        self.inbox: deque = deque()
        self.parked: list[tuple[int, int, float]] = []  # (proc, step, time it was found not ready)
        self.wake: simpy.Event | None = None
        self.reply_version = -1
        ops = model.costs
        numels = model.topo.shard_parts[shard]
        self.update_cost = ops.op("server_update", numels)
        self.reply_cost = ops.op("server_reply", numels)
        self.push_cost = {
            p: ops.op("server_accumulate" if model.scn.sync.mode == "bsp" else "server_apply", model.topo.part_numels[p][shard])
            for p in pushers
        }
        model.env.process(self.run())

    def deliver(self, msg: tuple) -> None:
        self.inbox.append(msg)
        if self.wake is not None:
            w, self.wake = self.wake, None
            w.succeed()

    def _ready(self, step: int) -> bool:
        m = self.m
        return sync.pull_ready(m.scn.sync.mode, m.scn.sync.bound, step, self.state.version, self.state.min_clock)

    def run(self):  # noqa: ANN201 - SimPy process
        env, m, st = self.m.env, self.m, self.state
        mode = m.scn.sync.mode
        while True:
            if not self.inbox:
                self.wake = env.event()
                yield self.wake
                continue
            kind = self.inbox[0][0]
            if kind == wire.PULL:
                _, proc, step, _t_arr = self.inbox.popleft()
                if self._ready(step):
                    yield from self._reply([(proc, step, env.now)])
                else:  # held by the sync rule from now until it is ready: that is its wait
                    self.parked.append((proc, step, env.now))
                continue
            # a run of pushes, cut after any push that completes a bsp clock or releases a held pull
            batch, cost, release = [], 0.0, False
            while self.inbox and self.inbox[0][0] == wire.PUSH and not release:
                msg = self.inbox.popleft()
                _, proc, step, read, nbytes, t_arr = msg
                cost += self.push_cost[proc]
                batch.append((proc, step, read, nbytes, t_arr, st.version))
                st.record_push(proc)
                if mode == "bsp":
                    n = st.bsp_count.get(step, 0) + 1
                    st.bsp_count[step] = n
                    release = n == self.n_pushers
                else:
                    st.version += 1
                    release = any(self._ready(s) for _, s, _ in self.parked)
            t0 = env.now
            yield m.procs.run(self.core, cost)
            m.rec.spans.append((self.s, 0 if mode == "bsp" else 1, t0, env.now, 0))
            r = m.rec
            for proc, step, read, nbytes, t_arr, applied in batch:
                r.grad_read[proc, step, self.s] = read
                r.grad_applied[proc, step, self.s] = applied
                r.grad_arrive_s[proc, step, self.s] = t_arr
                r.grad_done_s[proc, step, self.s] = env.now
                r.grad_bytes[proc, step, self.s] = nbytes
            if mode == "bsp" and release:
                step = batch[-1][1]
                del st.bsp_count[step]
                t0 = env.now
                yield m.procs.run(self.core, self.update_cost)
                st.version += 1
                m.rec.spans.append((self.s, 1, t0, env.now, 0))
            if self.parked:
                ready = [q for q in self.parked if self._ready(q[1])]
                if ready:
                    self.parked = [q for q in self.parked if not self._ready(q[1])]
                    yield from self._reply(ready)

    def _reply(self, pulls: list[tuple[int, int, float]]):  # noqa: ANN202
        m, env = self.m, self.m.env
        t_ready = env.now
        if self.reply_version != self.state.version:
            yield m.procs.run(self.core, self.reply_cost)
            self.reply_version = self.state.version
        version = self.state.version
        for proc, _step, t_held in pulls:
            wait = t_ready - t_held
            nbytes = m.topo.pull_bytes[proc][self.s]
            m.rec.spans.append((self.s, 2, t_ready, env.now, nbytes))
            worker = m.workers[proc]
            m.net.send(self.endpoint, proc, nbytes, lambda w=worker, s=self.s, v=version, wt=wait: w.on_reply(s, v, wt))


class Worker:
    """One worker process: a data-parallel worker, or one stage of a pipeline replica."""

    def __init__(self, model: SimModel, proc: int) -> None:
        self.m = model
        self.p = proc
        self.replica, self.stage = divmod(proc, model.scn.pipeline.stages)
        self.shards = model.topo.shards_of[proc]
        self.host = model.procs.host_res[proc]
        self.device = model.procs.compute_res[proc]
        c = model.costs
        self.unpack_cost = {s: c.op("worker_unpack", model.topo.part_numels[proc][s]) for s in self.shards}
        self.pack_cost = sum(c.op("worker_pack", model.topo.part_numels[proc][s]) for s in self.shards)
        self.replies: deque = deque()
        self.wake: simpy.Event | None = None
        self.pushes_left = 0
        self.push_done: simpy.Event | None = None
        self.versions: dict[int, int] = {}
        self.mailbox: dict[tuple[int, int, int], simpy.Event] = {}  # pipeline: (kind, step, mb) -> arrival
        self.proc = model.env.process(self.run())

    # --------------------------------------------------------------------------- callbacks
    def on_reply(self, shard: int, version: int, wait: float) -> None:
        self.replies.append((shard, version, wait))
        if self.wake is not None:
            w, self.wake = self.wake, None
            w.succeed()

    def _on_pushed(self) -> None:
        self.pushes_left -= 1
        if self.pushes_left == 0:
            self.push_done.succeed()  # type: ignore[union-attr]

    def mail(self, key: tuple[int, int, int]) -> simpy.Event:
        ev = self.mailbox.get(key)
        if ev is None:
            ev = self.mailbox[key] = self.m.env.event()
        return ev

    # ------------------------------------------------------------------------------- steps
    def run(self):  # noqa: ANN201 - SimPy process
        m, env, p = self.m, self.m.env, self.p
        t, rec = m.rec.times, m.rec
        n_sh = len(self.shards)
        for step in range(m.scn.training.steps):
            # ---- pull
            t["pull_start_s"][p, step] = env.now
            for s in self.shards:
                srv = m.servers[s]
                m.net.send(p, srv.endpoint, wire.HEADER_BYTES, lambda srv=srv, step=step: srv.deliver((wire.PULL, p, step, env.now)))
            got, wait = 0, 0.0
            while got < n_sh:
                if not self.replies:
                    self.wake = env.event()
                    yield self.wake
                batch = list(self.replies)
                self.replies.clear()
                cost = 0.0
                for s, version, wt in batch:
                    self.versions[s] = version
                    wait = max(wait, wt)
                    cost += self.unpack_cost[s]
                yield m.procs.run(self.host, cost)
                got += len(batch)
            t["pull_end_s"][p, step] = env.now
            t["wait_s"][p, step] = wait
            # ---- compute
            t["compute_start_s"][p, step] = env.now
            if m.scn.pipeline.stages == 1:
                yield from self._compute(step, m.costs.compute_s, fixed=m.fixed_compute)
            else:
                yield from self._pipeline(step)
            t["compute_end_s"][p, step] = env.now
            # ---- push
            t["push_start_s"][p, step] = env.now
            yield m.procs.run(self.host, self.pack_cost)
            self.pushes_left = n_sh
            self.push_done = env.event()
            sent = n_sh * wire.HEADER_BYTES
            for s in self.shards:
                srv = m.servers[s]
                nbytes = m.topo.push_bytes[p][s]
                sent += nbytes
                msg = (wire.PUSH, p, step, self.versions[s], nbytes)
                m.net.send(p, srv.endpoint, nbytes, lambda srv=srv, msg=msg: self._arrive(srv, msg))
            yield self.push_done
            t["push_end_s"][p, step] = env.now
            if self.stage == 0:
                rec.samples[p, step] = m.scn.training.batch_size
            rec.bytes_sent[p, step] += sent

    def _arrive(self, srv: ServerShard, msg: tuple) -> None:
        srv.deliver((*msg, self.m.env.now))
        self._on_pushed()

    def _compute(self, step: int, work_s: float, fixed: bool):  # noqa: ANN202
        env, m = self.m.env, self.m
        t0 = env.now
        # a fixed step time (compute.step_time_s) is a what-if: it holds no device
        yield m.procs.run(None if fixed else self.device, work_s)
        f = m.factors[self.replica, self.stage, step]
        if f > 1.0:
            yield env.timeout(straggle_delay(env.now - t0, f))
        m.rec.busy.append((self.p, step, t0, env.now)) if m.scn.pipeline.stages > 1 else None

    def _pipeline(self, step: int):  # noqa: ANN202
        m, k = self.m, self.stage
        P = m.scn.pipeline.stages
        mb_bytes = m.act_bytes[k]  # activation this stage sends forward
        for kind, mb in m.schedule[k]:
            if kind == "F":
                if k > 0:
                    yield self.mail((wire.ACT, step, mb))
                yield from self._compute(step, m.costs.stage_fwd_s[k], fixed=False)
                if k < P - 1:
                    nxt = m.workers[self.p + 1]
                    self.m.rec.bytes_sent[self.p, step] += mb_bytes
                    m.net.send(self.p, self.p + 1, mb_bytes, lambda n=nxt, key=(wire.ACT, step, mb): n.mail(key).succeed())
            else:
                if k < P - 1:
                    yield self.mail((wire.ACT_GRAD, step, mb))
                yield from self._compute(step, m.costs.stage_bwd_s[k], fixed=False)
                if k > 0:
                    prv = m.workers[self.p - 1]
                    gb = m.act_bytes[k - 1]
                    self.m.rec.bytes_sent[self.p, step] += gb
                    m.net.send(self.p, self.p - 1, gb, lambda n=prv, key=(wire.ACT_GRAD, step, mb): n.mail(key).succeed())
        for key in [key for key in self.mailbox if key[1] == step]:
            del self.mailbox[key]


class SimModel:
    def __init__(
        self, env: simpy.Environment, scn: Scenario, costs: CostModel, place: Placement, topo: Topology,
        schedule: list[list[tuple[str, int]]], act_bytes: list[int], net: Network, procs: Processors,
    ) -> None:
        self.env, self.scn, self.costs, self.place, self.topo = env, scn, costs, place, topo
        self.schedule, self.act_bytes, self.net, self.procs = schedule, act_bytes, net, procs
        self.fixed_compute = scn.compute.step_time_s is not None
        self.factors = compute_factors(scn)
        self.rec = Records(scn.cluster.workers.count, scn.pipeline.stages, scn.training.steps, scn.cluster.servers.count)
        self.workers: list[Worker] = []
        self.servers = [ServerShard(self, s) for s in range(scn.cluster.servers.count)]
        self.workers = [Worker(self, p) for p in range(topo.n_procs)]
