"""The SimPy model of a parameter-server run: ServerShard and Worker processes over Network and
Processors (`pssim.sim.resources`, or the host model's `pssim.sim.host` in the HERE view).

A worker process runs `training.steps` steps of: pull (a request to each of its shards; replies
are unpacked on its core as they arrive, all replies that have arrived by then as one job),
compute (forward+backward on its device, or the pipeline stage's schedule of microbatch actions,
then any straggler delay), push (pack every shard's gradient, then send them all at once; the
step ends when the last is delivered). With communication.overlap the compute is forward, then
backward layer by layer, and each shard's push goes as soon as backward has produced it. A fault
crashes a worker as it reaches a step: it is down `restart_after_s` and redoes the step, or, for
good, it sends LEAVE to its shards and stops.

A server shard handles its inbox in arrival order, one message at a time, by the shard protocol
psreal's server executes too (`pssim.protocol.ShardProtocol`): a push is decoded and accumulated
(bsp) or applied (ssp/asp) on the server's core; under bsp the last gradient of a clock triggers
the optimiser update; a pull is answered when the sync rule allows, else held until a gradient
makes it ready. Replies for one version are packed once and sent to every waiting worker. LEAVE
takes a worker out of the sync rule. Consecutive pushes whose effects release nothing are costed
as one job, which gives the same times as costing them one by one. The run ends when every
worker has finished its last step and every shard has applied every gradient.

A delivered message reaches its role (and a push's end reaches the pushing worker) through the
receiver the network gives it (`Network.receiver`): at once in a target cluster; in the host
model once the role's thread gets its core (`HostNetwork.hand_over`).

Ties: events due at the same instant run in the order SimPy scheduled them; messages that finish
together are delivered in the order they were sent. Records are logged as rows when the thing
happens and folded into the columnar `Records` once the run ends. Messages are named records
(`pssim.sim.messages`).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from .. import wire
from ..draws import compute_factors, natural_factors, straggle_delay
from ..protocol import ShardProtocol
from ..records import STEP_TIME_FIELDS, Busy, Records, Span, SpanKind
from ..wire import Kind
from .messages import Activation, Leave, PullRequest, Push, Reply
from .resources import COMPUTE

if TYPE_CHECKING:
    from collections.abc import Generator

    from ..costs import CostModel
    from ..layout import Placement
    from ..runplan import RunPlan
    from ..scenario import Scenario
    from .resources import Network, Processors

PULL, PUSH, LEAVE, ACT, ACT_GRAD = Kind.PULL, Kind.PUSH, Kind.LEAVE, Kind.ACT, Kind.ACT_GRAD


class ServerShard:
    """One PS shard process: applies gradients and answers pulls, one message at a time."""

    def __init__(self, model: SimModel, shard: int) -> None:
        self.m = model
        self.env = model.env
        self.s = shard
        self.endpoint = model.topo.n_procs + shard
        self.core = model.procs.server_res[shard]
        pushers = model.topo.pushers_of[shard]
        self.mode = model.scn.sync.mode
        self.proto = ShardProtocol(
            self.mode, model.scn.sync.bound, pushers, model.scn.training.steps
        )
        # pull requests, pushes and leaves, in arrival order
        self.inbox: deque[PullRequest | Push | Leave] = deque()
        self.push_arrivals: deque[float] = deque()  # when each push in the inbox was delivered
        self.wake: simpy.Event | None = None
        self.grad_cols: tuple[list, ...] = ([], [], [], [], [])  # see `run`
        self.grad_done: list[tuple[int, float]] = []
        self.drained = model.env.event()  # every gradient applied
        topo = model.topo
        # one optimiser step and one reply encoding per segment (the stage slices the shard holds)
        self.update_cost = sum(model.per_stage_cost("server_update", shard))
        self.reply_cost = sum(model.per_stage_cost("server_reply", shard))
        op = "server_accumulate" if self.mode == "bsp" else "server_apply"
        per_stage = model.per_stage_cost(op, shard)
        self.push_cost = {p: per_stage[p % model.stages] for p in pushers}
        # replies: resource rows by proc, bytes and the worker's callback per proc
        net = model.net
        self.reply_rows = net.routes(self.endpoint, list(range(topo.n_procs)))
        self.reply_bytes = {p: topo.pull_bytes[p][shard] for p in pushers}
        self.reply_delay = net.delay_w2s
        # a pull request, push or LEAVE delivered: the shard's main loop sees it once it gets its
        # core (`Network.receiver`)
        self.deliver = net.receiver(self.endpoint, self._take)
        self.last_job: simpy.Event | None = (
            None  # the main thread's latest job on its core (`_work`)
        )
        model.env.process(self.run())

    # ---------------------------------------------------------------------------- delivery
    def _take(self, msg: PullRequest | Push | Leave) -> None:
        self.inbox.append(msg)
        if self.wake is not None:
            w, self.wake = self.wake, None
            w.succeed()

    def deliver_push(self, msg: Push) -> None:
        """A push delivered: the shard's main loop takes it, and the pushing worker learns that it
        is through (its step ends with the last), each once its thread gets its core."""
        # its arrival time: delivered (psreal: Message.t_delivered), not yet seen. The shard takes
        # its pushes in the order they were delivered (a hand-over keeps the order)
        self.push_arrivals.append(self.env.now)
        self.deliver(msg)
        msg.worker.push_through(msg)

    # ----------------------------------------------------------------------------- process
    def run(self) -> Generator[simpy.Event, Any, None]:
        env, m, proto = self.m.env, self.m, self.proto
        bsp = self.mode == "bsp"
        aggregate = SpanKind.AGGREGATE if bsp else SpanKind.UPDATE
        arrivals = self.push_arrivals.popleft
        inbox, spans = self.inbox, m.rec.spans
        # gradient log, one column each: pusher, step, version read, version applied to, arrival
        g_proc, g_step, g_read, g_applied, g_arr = (c.append for c in self.grad_cols)
        g_done = self.grad_done.append  # (gradients in the job, time the job ended)
        s, push_cost = self.s, self.push_cost
        while True:
            if not inbox:
                self.wake = env.event()
                yield self.wake
                continue
            if inbox[0].kind == LEAVE:  # a worker crashed for good: out of the sync rule
                for _ in proto.leave(inbox.popleft().proc):
                    yield from self._update()
                yield from self._release()
                if proto.drained:
                    self.drained.succeed()
                continue
            if inbox[0].kind == PULL:
                # pulls back to back: those ready on a version already packed go out together, at
                # this instant, exactly as if handled one by one; one that needs packing waits
                # for it
                now, group = env.now, []
                last_step, ready = -1, False  # readiness depends only on the step here
                while inbox and inbox[0].kind == PULL:
                    step = inbox[0].worker.step  # the step the worker is in
                    if step != last_step:
                        last_step, ready = step, proto.pull_ready(step)
                    if not ready:  # held by the sync rule from now until ready: that is its wait
                        proto.hold(inbox.popleft().proc, step, now)
                    elif not proto.needs_encoding():
                        group.append(inbox.popleft().proc)
                    else:
                        break
                if group:
                    self._send_replies(group, None, now)
                if inbox and inbox[0].kind == PULL:  # ready, but the version is not packed yet
                    proc = inbox.popleft().proc
                    yield self._work(self.reply_cost)
                    proto.encoded()
                    self._send_replies([proc], None, now)
                continue
            # a run of pushes, cut after any push that completes a bsp clock or releases a held
            # pull;
            # each gradient is logged now and its application time once the run is done
            n_job, cost, release = 0, 0.0, False
            while inbox and inbox[0].kind == PUSH and not release:
                push = inbox.popleft()
                proc = push.proc
                n_job += 1
                cost += push_cost[proc]
                g_proc(proc)
                g_step(push.step)
                g_read(push.version_read)
                g_applied(proto.version)
                g_arr(arrivals())
                # bsp: summed, the version moves once the clock is complete; else applied now
                release = proto.push(proc, push.step) or (not bsp and proto.held_ready())
            t0 = env.now
            yield self._work(cost)
            t1 = env.now
            spans.append(Span(s, aggregate, t0, t1, 0))
            g_done((n_job, t1))
            proto.count_applied(n_job)
            if bsp and release:
                yield from self._update()
            yield from self._release()
            if proto.drained:
                self.drained.succeed()

    def _work(self, cost: float) -> simpy.Event:
        """A job of the shard's main thread on its core (decoding and adding or applying pushes,
        the update, encoding a reply). One that starts as the thread's previous job ends goes on
        with that job's hold of the core (`Processors.run`'s `after`): psreal's main loop goes
        from the clock's last push to the update and the reply without sleeping."""
        self.last_job = self.m.procs.run(self.core, cost, after=self.last_job, who=self.endpoint)
        return self.last_job

    def _update(self) -> Generator[simpy.Event, Any, None]:
        """bsp: one optimiser step with the clock's summed gradient (version + 1)."""
        t1 = self.env.now
        yield self._work(self.update_cost)
        self.proto.updated()
        self.m.rec.spans.append(Span(self.s, SpanKind.UPDATE, t1, self.env.now, 0))

    def _release(self) -> Generator[simpy.Event, Any, None]:
        """Answer the held pulls the sync rule now allows (packing the version once)."""
        ready_now = self.proto.release()
        if ready_now:
            t_ready = self.env.now
            if self.proto.needs_encoding():
                yield self._work(self.reply_cost)
                self.proto.encoded()
            self._send_replies(
                [q.proc for q in ready_now], [t_ready - q.held_at_s for q in ready_now], t_ready
            )

    def _send_replies(self, procs: list[int], waits: list[float] | None, t_ready: float) -> None:
        """Send the current version to each proc; its wait is how long the sync rule held its
        pull (`waits`; None: it was ready when handled)."""
        m = self.m
        now, version, s, delay = self.env.now, self.proto.version, self.s, self.reply_delay
        size_of, reply_to = self.reply_bytes, m.reply_to
        sizes = [size_of[p] for p in procs]
        m.rec.spans.extend([Span(s, SpanKind.REPLY, t_ready, now, n) for n in sizes])
        if waits is None:
            msgs = [Reply(delay, reply_to[p], s, version, 0.0) for p in procs]
        else:
            msgs = [
                Reply(delay, reply_to[p], s, version, w) for p, w in zip(procs, waits, strict=True)
            ]
        m.net.send_many(self.reply_rows[procs], sizes, msgs)


class Worker:
    """One worker process: a data-parallel worker, or one stage of a pipeline replica."""

    def __init__(self, model: SimModel, proc: int) -> None:
        self.m = model
        self.p = proc
        self.replica, self.stage = divmod(proc, model.stages)
        self.shards = model.topo.shards_of[proc]
        self.host = model.procs.host_res[proc]
        self.device = model.procs.compute_res[proc]
        unpack = model.per_stage_cost("worker_unpack")[self.stage]
        self.unpack_cost = {s: unpack[s] for s in self.shards}
        self.pack_one = [model.per_stage_cost("worker_pack")[self.stage][s] for s in self.shards]
        self.pack_cost = sum(self.pack_one)
        net, topo = model.net, model.topo
        servers = [model.servers[s] for s in self.shards]
        self.routes = net.routes(proc, [srv.endpoint for srv in servers])  # to each of its shards
        self.delay = net.delay_w2s
        self.request_bytes = [wire.HEADER_BYTES] * len(servers)
        self.requests = [PullRequest(self.delay, srv.deliver, PULL, proc, self) for srv in servers]
        self.step = -1  # the step it is in
        self.push_bytes = [topo.push_bytes[proc][s] for s in self.shards]
        self.push_to = [srv.deliver_push for srv in servers]
        # pipeline neighbours: the next and previous stage of the same replica
        self.route_next = net.routes(proc, proc + 1) if self.stage < model.stages - 1 else None
        self.route_prev = net.routes(proc, proc - 1) if self.stage > 0 else None
        # pull phase: replies not unpacked yet, how many are unpacked, being unpacked, the longest
        # sync hold among them; idle: waiting for replies and not unpacking
        self.replies: list[tuple] = []
        self.got, self.unpacking, self.wait, self.idle = 0, 0, 0.0, False
        self.run_job, self.unpacked = model.procs.run, self._unpacked  # bound once
        # what reaches this process, once its thread gets its core (`Network.receiver`): a reply,
        # the notice that a push is through, a pipeline neighbour's activations
        self.on_reply = net.receiver(proc, self._take_reply)
        self.push_through = net.receiver(proc, self.pushed)
        self.on_mail = net.receiver(proc, self._take_mail)
        self.pull_done: simpy.Event | None = None
        self.pushes_left = 0
        self.push_done: simpy.Event | None = None
        self.versions: dict[int, int] = {}
        self.step_bytes = 0  # pipeline activations sent in the current step
        self.mailbox: dict[
            tuple[int, int, int], simpy.Event
        ] = {}  # pipeline: (kind, step, mb) -> arrival
        self.proc = model.env.process(self.run())

    # --------------------------------------------------------------------------- callbacks
    def pushed(self, _msg: Push) -> None:
        """One of this step's pushes is through (psreal: its SendHandle's wait returned)."""
        self.pushes_left -= 1
        if not self.pushes_left:
            self.push_done.succeed()  # type: ignore[union-attr]

    def _take_reply(self, msg: Reply) -> None:
        self.replies.append(msg)
        if self.idle:  # waiting for replies: unpack all that arrive at this instant as one job
            self.idle = False
            self.m.net.after_arrivals(self._unpack)

    def _unpack(self) -> None:
        """Unpack the replies that have arrived (one job on the host), then the next ones."""
        batch, self.replies = self.replies, []
        versions, wait, unpack_cost, cost = self.versions, self.wait, self.unpack_cost, 0.0
        for msg in batch:
            s = msg.shard
            versions[s] = msg.version
            cost += unpack_cost[s]
            if msg.wait_s > wait:
                wait = msg.wait_s
        self.wait = wait
        self.unpacking = len(batch)
        self.run_job(self.host, cost, who=self.p).callbacks.append(self.unpacked)  # type: ignore[union-attr]

    def _unpacked(self, _ev: simpy.Event) -> None:
        self.got += self.unpacking
        if self.got == len(self.shards):
            self.pull_done.succeed()  # type: ignore[union-attr]
        elif self.replies:  # more arrived meanwhile
            self._unpack()
        else:
            self.idle = True

    def mail(self, key: tuple[int, int, int]) -> simpy.Event:
        ev = self.mailbox.get(key)
        if ev is None:
            ev = self.mailbox[key] = self.m.env.event()
        return ev

    def _take_mail(self, msg: Activation) -> None:
        self.mail((msg.kind, msg.step, msg.microbatch)).succeed()

    # ------------------------------------------------------------------------------- steps
    def run(self) -> Generator[simpy.Event, Any, None]:
        m, env, p = self.m, self.m.env, self.p
        send, procs, host = m.net.send_many, m.procs, self.host
        n_sh = len(self.shards)
        samples = m.scn.training.batch_size if self.stage == 0 else 0
        routes, delay, shards = self.routes, self.delay, self.shards
        request_bytes = sum(self.request_bytes)
        steps_log = m.step_log
        versions = self.versions
        compute_res, compute_s = None if m.fixed_compute else self.device, m.costs.compute_s
        factors = m.factors[self.replica, self.stage].tolist()
        natural = m.natural[self.replica, self.stage].tolist()
        crashes = m.scn.crashes_of(self.replica)
        overlap = m.overlap is not None
        for step in range(m.scn.training.steps):
            if step in crashes:  # faults: the process crashes as it reaches this step
                restart_after = crashes[step]
                if restart_after is None:  # for good: its shards take it out of the sync rule
                    leaves = [Leave(delay, m.servers[s].deliver, LEAVE, p) for s in shards]
                    send(routes, self.request_bytes, leaves)
                    return
                yield env.timeout(restart_after)  # down, then back with a fresh pull
            # ---- pull
            pull_start = env.now
            self.step_bytes = 0
            self.step = step
            send(routes, self.request_bytes, self.requests)
            # replies are unpacked by callbacks as they arrive (`on_reply`, `_unpack`)
            self.got, self.wait, self.idle = 0, 0.0, True
            self.pull_done = env.event()
            yield self.pull_done
            wait = self.wait
            pull_end = env.now
            # ---- compute
            push_start = None
            ran = None  # the main thread's last compute job, when it goes on without a pause
            if overlap:  # push each shard's gradient as soon as backward has produced it
                push_start = yield from self._compute_overlapped(step, factors[step], natural[step])
            elif m.stages == 1:
                t0 = env.now
                # a fixed step time (compute.step_time_s) is a what-if: it holds no device
                ran = procs.run(compute_res, compute_s * natural[step], COMPUTE, who=self.p)
                yield ran
                f = factors[step]
                if f > 1.0:  # a straggler sleeps, and then wakes to pack
                    ran = None
                    yield env.timeout(straggle_delay(env.now - t0, f))
            else:
                yield from self._pipeline(step)
            compute_end = env.now
            # ---- push
            if push_start is None:
                push_start = compute_end
                # packed and sent on the thread that has just computed: its turn goes on
                packed = procs.run(host, self.pack_cost, after=ran, who=self.p)
                m.net.continues(p, packed)
                yield packed
                self.pushes_left = n_sh
                self.push_done = env.event()
                pushes = [
                    Push(delay, to, PUSH, p, step, versions[s], nb, self)
                    for s, nb, to in zip(shards, self.push_bytes, self.push_to, strict=True)
                ]
                send(routes, self.push_bytes, pushes)
            yield self.push_done
            sent = request_bytes + sum(self.push_bytes) + self.step_bytes
            steps_log.append(
                (
                    p,
                    step,
                    pull_start,
                    pull_end,
                    pull_end,
                    compute_end,
                    push_start,
                    env.now,
                    wait,
                    samples,
                    sent,
                )
            )

    def _compute_overlapped(
        self, step: int, factor: float, natural: float
    ) -> Generator[simpy.Event, Any, float]:
        """Forward, then backward unit by unit (last first); when a shard's last unit is done its
        gradient is packed and sent at once. Returns when the first push started."""
        m, env, p = self.m, self.m.env, self.p
        fwd_s, bwd_s, ready_at = m.overlap  # type: ignore[misc]
        res = None if m.fixed_compute else self.device
        t0 = env.now
        # one thread runs forward, backward and the packing hooks back to back: each job goes
        # on with the turn of the one before (`Processors.run`'s `after`)
        ran = m.procs.run(res, fwd_s * natural, COMPUTE, who=self.p)
        yield ran
        self.pushes_left = len(self.shards)
        self.push_done = env.event()
        first = None
        for u in range(len(bwd_s) - 1, -1, -1):
            ran = m.procs.run(res, bwd_s[u] * natural, COMPUTE, after=ran, who=self.p)
            yield ran
            for i in ready_at[u]:
                s = self.shards[i]
                if first is None:
                    first = env.now
                ran = m.procs.run(self.host, self.pack_one[i], after=ran, who=self.p)
                m.net.continues(p, ran)
                yield ran
                nb = self.push_bytes[i]
                msg = Push(self.delay, self.push_to[i], PUSH, p, step, self.versions[s], nb, self)
                m.net.send_many(self.routes[i : i + 1], [nb], [msg])
        if factor > 1.0:
            yield env.timeout(straggle_delay(env.now - t0, factor))
        return first if first is not None else env.now

    def _action(self, step: int, work_s: float) -> Generator[simpy.Event, Any, None]:
        """One pipeline action (a microbatch's forward or backward) on the stage's device."""
        env, m = self.m.env, self.m
        t0 = env.now
        yield m.procs.run(
            self.device, work_s * m.natural[self.replica, self.stage, step], COMPUTE, who=self.p
        )
        f = m.factors[self.replica, self.stage, step]
        if f > 1.0:
            yield env.timeout(straggle_delay(env.now - t0, f))
        m.rec.busy.append(Busy(self.p, step, t0, env.now))

    def _pipeline(self, step: int) -> Generator[simpy.Event, Any, None]:
        m, k = self.m, self.stage
        P, net = m.stages, m.net
        mb_bytes = m.act_bytes[k]  # activation this stage sends forward
        for kind, mb in m.schedule[k]:
            if kind == "F":
                if k > 0:
                    yield self.mail((ACT, step, mb))
                yield from self._action(step, m.costs.stage_fwd_s[k])
                if k < P - 1:
                    nxt = m.workers[self.p + 1]
                    self.step_bytes += mb_bytes
                    net.send_many(
                        self.route_next,
                        [mb_bytes],
                        [Activation(net.delay_w2w, nxt.on_mail, ACT, step, mb)],
                    )
            else:
                if k < P - 1:
                    yield self.mail((ACT_GRAD, step, mb))
                yield from self._action(step, m.costs.stage_bwd_s[k])
                if k > 0:
                    prv = m.workers[self.p - 1]
                    gb = m.act_bytes[k - 1]
                    self.step_bytes += gb
                    net.send_many(
                        self.route_prev,
                        [gb],
                        [Activation(net.delay_w2w, prv.on_mail, ACT_GRAD, step, mb)],
                    )
        for key in [key for key in self.mailbox if key[1] == step]:
            del self.mailbox[key]


def overlap_plan(
    scn: Scenario, costs: CostModel, plan: RunPlan
) -> tuple[float, list[float], list[list[int]]]:
    """For communication.overlap: (forward seconds, backward seconds per unit, shard positions
    whose gradients are complete once backward has finished each unit).

    The measured (or roofline) step time is split over forward and each unit's backward in the
    proportions of the units' roofline costs; a shard is complete once backward has passed the
    first unit holding any of its parameters (backward runs from the last unit to the first).
    """
    from ..costs import unit_roofline_s

    fb = unit_roofline_s(scn)
    total = sum(f + b for f, b in fb)
    fwd_s = costs.compute_s * sum(f for f, _ in fb) / total
    bwd_s = [costs.compute_s * b / total for _, b in fb]
    ready_at: list[list[int]] = [[] for _ in fb]
    for i, s in enumerate(plan.topology.shards_of[0]):
        ready_at[min(q.unit for q in plan.shards.shards[s])].append(i)
    return fwd_s, bwd_s, ready_at


class SimModel:
    """The whole run: entities, the costs they pay, and the logs they write."""

    def __init__(
        self,
        env: simpy.Environment,
        plan: RunPlan,
        costs: CostModel,
        place: Placement,
        net: Network,
        procs: Processors,
        draw: int = 0,
    ) -> None:
        scn = plan.scenario
        self.env, self.scn, self.costs, self.place = env, scn, costs, place
        self.plan, self.topo = plan, plan.topology
        self.schedule, self.act_bytes, self.net, self.procs = (
            plan.schedule,
            plan.act_bytes,
            net,
            procs,
        )
        self.stages = scn.pipeline.stages
        self.overlap = overlap_plan(scn, costs, plan) if scn.communication.overlap else None
        self.fixed_compute = scn.compute.step_time_s is not None
        self.factors = compute_factors(scn)
        nat = natural_factors(scn, list(costs.compute_samples_s), draw)
        self.natural = nat if nat is not None else np.ones_like(self.factors)
        self.rec = Records(
            scn.cluster.workers.count,
            scn.pipeline.stages,
            scn.training.steps,
            scn.cluster.servers.count,
        )
        # rows logged as things happen, folded into self.rec by `finish`
        self.step_log: list[tuple] = []
        self._stage_costs: dict[tuple[str, int | None], list] = {}
        self.workers: list[Worker] = []
        self.servers = [ServerShard(self, s) for s in range(scn.cluster.servers.count)]
        self.workers = [Worker(self, p) for p in range(plan.n_procs)]
        self.reply_to = [w.on_reply for w in self.workers]  # bound once

    def per_stage_cost(self, op: str, shard: int | None = None) -> list:
        """Cost of `op` over each stage's slice: [stage][shard] (or [stage] for one shard).

        Every worker process of one stage holds the same slice, so this is computed once per stage.
        """
        key = (op, shard)
        got = self._stage_costs.get(key)
        if got is None:
            S = self.scn.cluster.servers.count
            shards = range(S) if shard is None else [shard]
            got = []
            for k in range(self.stages):
                per = [
                    self.costs.op(op, self.topo.part_numels[k][s])
                    if self.topo.part_numels[k][s]
                    else 0.0
                    for s in shards
                ]
                got.append(per if shard is None else per[0])
            self._stage_costs[key] = got
        return got

    def finish(self) -> Records:
        """Fold the logged rows into the columnar records."""
        rec = self.rec
        if self.step_log:
            a = np.array(self.step_log, dtype=float)
            p, c = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
            for i, f in enumerate(STEP_TIME_FIELDS):
                rec.times[f][p, c] = a[:, 2 + i]
            rec.samples[p, c] = a[:, 9].astype(np.int64)
            rec.bytes_sent[p, c] += a[:, 10].astype(np.int64)
        push_bytes = np.array(self.topo.push_bytes, dtype=np.int64)
        for srv in self.servers:
            if not srv.grad_done:
                continue
            p, c, read, applied = (np.array(col, dtype=np.int64) for col in srv.grad_cols[:4])
            s = np.full(p.size, srv.s)
            rec.grad_read[p, c, s] = read
            rec.grad_applied[p, c, s] = applied
            rec.grad_arrive_s[p, c, s] = np.array(srv.grad_cols[4], dtype=float)
            rec.grad_bytes[p, c, s] = push_bytes[p, srv.s]
            n, t = zip(*srv.grad_done, strict=True)
            rec.grad_done_s[p, c, s] = np.repeat(np.array(t, dtype=float), n)
            srv.grad_cols, srv.grad_done = ([], [], [], [], []), []
        self.step_log = []
        return rec
