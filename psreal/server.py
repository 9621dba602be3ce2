"""A parameter-server shard: holds its partitions' parameters and optimiser state, applies gradients.

The shard handles its inbox in delivery order, one message at a time (the simulator's ServerShard
mirrors this loop):

- PUSH: decode the gradient (pssim.wire format) and, under bsp, add it into the clock's sum, or,
  under ssp/asp, apply the optimiser with it at once (one update, version + 1). Under bsp the last
  gradient of a clock triggers one optimiser step with the sum (version + 1).
- PULL for step c: answered when `pssim.sync.pull_ready` allows, else held until it does. A reply
  carries the version and how long the sync rule held the pull. Parameters are packed to the wire
  dtype once per version (a copy, so that the next update cannot change a reply on its way) and
  the same bytes go to every puller. A puller's previous reply is let go when its next one is sent
  (a worker pulls again only once it has its last reply): a shard holds one reply per puller.

Parameters are float32 master copies. A shard holding parameters of several pipeline stages keeps
one segment (parameters + torch optimiser) per stage, since each stage pushes only its own.
The optimiser is torch.optim (SGD with momentum / Adam) on the flat segment, so an update is
exactly what a single-process torch loop would do with the same gradient.

Testing hook: `PSREAL_FAULT=server:S:step:N:raise|kill|exit|hang` makes shard S fail when the
first gradient of step N arrives (see psreal/roles.py, `inject_fault`).
"""

from __future__ import annotations

import queue
import time

import torch

from pssim import sync, wire

from . import msgtrace
from .codec import decode_push, encode_dense
from .models import initial_flat_params
from .roles import RoleContext, inject_fault
from .transport import SendHandle
from .worker import _rss_bytes

STALL_S = 120.0


class _Segment:
    def __init__(self, ctx: RoleContext, shard: int, stage: int, init: list[torch.Tensor]) -> None:
        a, b = ctx.plan.bounds[stage]
        parts = [q for q in ctx.plan.shards.shards[shard] if a <= q.unit < b]
        self.numels = [q.numel for q in parts]
        self.param = torch.nn.Parameter(
            torch.cat([init[q.param][q.offset : q.offset + q.numel] for q in parts])
        )
        opt = ctx.scn.training.optimizer
        if opt.name == "adam":
            self.opt: torch.optim.Optimizer = torch.optim.Adam(
                [self.param], lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay
            )
        else:
            self.opt = torch.optim.SGD(
                [self.param], lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
            )
        self.acc = torch.zeros_like(self.param.data) if ctx.scn.sync.mode == "bsp" else None
        self.wire: torch.Tensor | None = None

    def step(self, grad: torch.Tensor) -> None:
        self.param.grad = grad
        self.opt.step()
        self.param.grad = None


class ServerRole:
    def __init__(self, ctx: RoleContext, shard: int) -> None:
        self.ctx, self.s = ctx, shard
        self.rss0 = _rss_bytes()
        scn = ctx.scn
        self.mode, self.bound = scn.sync.mode, scn.sync.bound
        self.P = scn.pipeline.stages
        self.pushers = ctx.plan.topology.pushers_of[shard]
        init = initial_flat_params(scn.model, scn.seed)
        stages = sorted({p % self.P for p in self.pushers})
        self.segments = {k: _Segment(ctx, shard, k, init) for k in stages}
        self.sync = sync.ShardSync(
            self.mode, self.bound, self.pushers
        )  # the simulator's rule, shared
        self.parked: list[tuple[int, int, float]] = []
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.reply_version = -1
        # each puller's last reply in flight: a worker pulls again only once it has its last reply,
        # so an older one is through and is let go (with its buffer) when the next is sent
        self.sends: dict[int, SendHandle] = {}
        self.pulls_answered = 0
        self.fault_checked: set[int] = set()
        comm = scn.communication
        self.codec = (comm.wire_dtype, comm.compression.kind, comm.compression.ratio)

    def _update(self) -> None:
        """Under bsp: one optimiser step per segment with the clock's summed gradient."""
        for sg in self.segments.values():
            sg.step(sg.acc)  # type: ignore[arg-type]
            sg.acc = torch.zeros_like(sg.param.data)
        self.sync.updated()

    def run(self) -> None:
        ctx, rec, steps = self.ctx, self.ctx.records, self.ctx.scn.training.steps
        for p in self.pushers:
            ctx.transport.receive_from(p, self.inbox.put)
        total = len(self.pushers) * steps
        pushes = 0
        while pushes < total or self.pulls_answered < total:
            try:
                msg = self.inbox.get(timeout=STALL_S)
            except queue.Empty:
                raise TimeoutError(
                    f"no message for {STALL_S:.0f} s (pushes {pushes}/{total}, pulls answered {self.pulls_answered}/{total})"
                ) from None
            msgtrace.mark("srv_get", msg.src, msg.seq, msg.kind)
            if msg.kind == -1:
                raise ctx.transport.receive_failed(msg.src)
            if msg.kind == wire.LEAVE:  # a worker crashed for good: out of the sync rule
                pushed, done = self.sync.leave(msg.src)
                total -= steps - pushed
                for _ in done:
                    t1 = time.monotonic()
                    self._update()
                    rec.spans.append((self.s, 1, t1, time.monotonic(), 0))
                self._release()
                continue
            if msg.kind == wire.PULL:
                now = time.monotonic()
                if self.sync.ready(msg.step):
                    self._reply([(msg.src, msg.step, now)])
                else:  # held by the sync rule from now on
                    self.parked.append((msg.src, msg.step, now))
                continue
            assert msg.kind == wire.PUSH, msg.kind
            pushes += 1
            p, step = msg.src, msg.step
            if step not in self.fault_checked:  # testing hook (PSREAL_FAULT); no-op otherwise
                self.fault_checked.add(step)
                inject_fault("server", self.s, step, ctx.layout.describe(ctx.rank))
            seg = self.segments[p % self.P]
            t0 = time.monotonic()
            grad = decode_push(msg.payload, seg.numels, *self.codec)  # type: ignore[arg-type]
            applied = self.sync.version
            if self.mode == "bsp":  # summed; the update once the clock is complete
                seg.acc.add_(grad)  # type: ignore[union-attr]
            else:  # applied now
                seg.step(grad)
            release = self.sync.push(p, step)
            t1 = time.monotonic()
            rec.spans.append((self.s, 0 if self.mode == "bsp" else 1, t0, t1, 0))
            rec.grad_read[p, step, self.s] = msg.version
            rec.grad_applied[p, step, self.s] = applied
            rec.grad_arrive_s[p, step, self.s] = msg.t_delivered
            rec.grad_done_s[p, step, self.s] = t1
            rec.grad_bytes[p, step, self.s] = msg.nbytes
            if release:
                self._update()
                rec.spans.append((self.s, 1, t1, time.monotonic(), 0))
            self._release()
        for h in self.sends.values():
            h.wait()
        for p in self.pushers:
            ctx.transport.stop(p)
        ctx.transport.join()

    def _release(self) -> None:
        """Answer the held pulls the sync rule now allows."""
        if self.parked:
            ready, self.parked = self.sync.split_ready(self.parked)
            if ready:
                self._reply(ready)

    def peak_memory(self) -> int:
        return max(0, _rss_bytes() - self.rss0)

    def final_params(self) -> dict[int, torch.Tensor]:
        """The shard's parameters after the run: per pipeline stage, its partitions concatenated."""
        return {k: sg.param.detach().clone() for k, sg in self.segments.items()}

    def _reply(self, pulls: list[tuple[int, int, float]]) -> None:
        t_ready = time.monotonic()
        if self.reply_version != self.sync.version:
            for sg in self.segments.values():
                sg.wire = encode_dense(sg.param.data, self.codec[0], copy=True)
            self.reply_version = self.sync.version
        t_packed = time.monotonic()
        for p, step, t_held in pulls:
            payload = self.segments[p % self.P].wire
            wait_us = int(round((t_ready - t_held) * 1e6))
            if p in self.sends:  # the puller's previous reply: through, since it pulled again
                self.sends[p].wait()
            self.sends[p] = self.ctx.transport.send(
                p, wire.REPLY, step=step, version=self.sync.version, payload=payload, aux=wait_us
            )
            self.ctx.records.spans.append(
                (self.s, 2, t_ready, t_packed, wire.HEADER_BYTES + payload.numel())
            )  # type: ignore[union-attr]
            self.pulls_answered += 1
            t_ready = t_packed
