"""A parameter-server shard: holds its partitions' parameters and optimiser state, applies
gradients.

The shard handles its inbox in delivery order, one message at a time, by the shard protocol the
simulator's ServerShard executes too (`pssim.protocol.ShardProtocol`: what a PULL, PUSH or LEAVE
leads to); this class does the work it asks for:

- PUSH: decode the gradient (pssim.wire format) and, under bsp, add it into the clock's sum, or,
  under ssp/asp, apply the optimiser with it at once. Under bsp the last gradient of a clock
  makes one optimiser step with the sum due.
- PULL: answered now, or held until the sync rule allows. A reply carries the version and how
  long the sync rule held the pull. Parameters are packed to the wire dtype once per version (a
  copy, so that the next update cannot change a reply on its way) and the same bytes go to every
  puller. A puller's previous reply is let go when its next one is sent (a worker pulls again
  only once it has its last reply): a shard holds one reply per puller.

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

from pssim import wire
from pssim.protocol import HeldPull, ShardProtocol
from pssim.records import Span, SpanKind

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
        # the shard protocol the simulator's shard executes too
        self.proto = ShardProtocol(self.mode, self.bound, self.pushers, scn.training.steps)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
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
        self.proto.updated()

    def run(self) -> None:
        ctx, rec, proto = self.ctx, self.ctx.records, self.proto
        for p in self.pushers:
            ctx.transport.receive_from(p, self.inbox.put)
        # every gradient it expects is applied and every pull answered (one per gradient)
        while not proto.drained or self.pulls_answered < proto.expected:
            try:
                msg = self.inbox.get(timeout=STALL_S)
            except queue.Empty:
                total = proto.expected
                raise TimeoutError(
                    f"no message for {STALL_S:.0f} s (pushes {proto.applied}/{total}, "
                    f"pulls answered {self.pulls_answered}/{total})"
                ) from None
            msgtrace.mark("srv_get", msg.src, msg.seq, msg.kind)
            if msg.kind == -1:
                raise ctx.transport.receive_failed(msg.src)
            if msg.kind == wire.LEAVE:  # a worker crashed for good: out of the sync rule
                for _ in proto.leave(msg.src):
                    t1 = time.monotonic()
                    self._update()
                    rec.spans.append(Span(self.s, SpanKind.UPDATE, t1, time.monotonic(), 0))
                self._release()
                continue
            if msg.kind == wire.PULL:
                now = time.monotonic()
                if proto.pull_ready(msg.step):
                    self._reply([HeldPull(msg.src, msg.step, now)])
                else:  # held by the sync rule from now on
                    proto.hold(msg.src, msg.step, now)
                continue
            assert msg.kind == wire.PUSH, msg.kind
            p, step = msg.src, msg.step
            if step not in self.fault_checked:  # testing hook (PSREAL_FAULT); no-op otherwise
                self.fault_checked.add(step)
                inject_fault("server", self.s, step, ctx.layout.describe(ctx.rank))
            seg = self.segments[p % self.P]
            t0 = time.monotonic()
            grad = decode_push(msg.payload, seg.numels, *self.codec)  # type: ignore[arg-type]
            applied = proto.version
            if self.mode == "bsp":  # summed; the update once the clock is complete
                seg.acc.add_(grad)  # type: ignore[union-attr]
            else:  # applied now
                seg.step(grad)
            update_due = proto.push(p, step)
            proto.count_applied()
            t1 = time.monotonic()
            kind = SpanKind.AGGREGATE if self.mode == "bsp" else SpanKind.UPDATE
            rec.spans.append(Span(self.s, kind, t0, t1, 0))
            rec.grad_read[p, step, self.s] = msg.version
            rec.grad_applied[p, step, self.s] = applied
            rec.grad_arrive_s[p, step, self.s] = msg.t_delivered
            rec.grad_done_s[p, step, self.s] = t1
            rec.grad_bytes[p, step, self.s] = msg.nbytes
            if update_due:
                self._update()
                rec.spans.append(Span(self.s, SpanKind.UPDATE, t1, time.monotonic(), 0))
            self._release()
        for h in self.sends.values():
            h.wait()
        for p in self.pushers:
            ctx.transport.stop(p)
        ctx.transport.join()

    def _release(self) -> None:
        """Answer the held pulls the sync rule now allows."""
        ready = self.proto.release()
        if ready:
            self._reply(ready)

    def peak_memory(self) -> int:
        return max(0, _rss_bytes() - self.rss0)

    def final_params(self) -> dict[int, torch.Tensor]:
        """The shard's parameters after the run: per pipeline stage, its partitions concatenated."""
        return {k: sg.param.detach().clone() for k, sg in self.segments.items()}

    def _reply(self, pulls: list[HeldPull]) -> None:
        """Send the current version to each pull (packed once per version); its reply says how
        long the sync rule held it."""
        t_ready = time.monotonic()
        if self.proto.needs_encoding():
            for sg in self.segments.values():
                sg.wire = encode_dense(sg.param.data, self.codec[0], copy=True)
            self.proto.encoded()
        t_packed = time.monotonic()
        version = self.proto.version
        for p, step, t_held in pulls:
            payload = self.segments[p % self.P].wire
            wait_us = int(round((t_ready - t_held) * 1e6))
            if p in self.sends:  # the puller's previous reply: through, since it pulled again
                self.sends[p].wait()
            self.sends[p] = self.ctx.transport.send(
                p, wire.REPLY, step=step, version=version, payload=payload, aux=wait_us
            )
            nbytes = wire.HEADER_BYTES + payload.numel()  # type: ignore[union-attr]
            self.ctx.records.spans.append(Span(self.s, SpanKind.REPLY, t_ready, t_packed, nbytes))
            self.pulls_answered += 1
            t_ready = t_packed
