"""A worker process: a data-parallel worker, or one stage of a pipeline replica.

Each step (the simulator's Worker mirrors it):
  pull     send a PULL to every shard holding this process's parameters, then unpack each reply
           into the model as it is delivered (host -> device through pinned memory on CUDA);
  compute  forward + backward on the local batch (or the stage's microbatch schedule, sending
           activations forward and their gradients back over the emulated links); GPU time is
           taken after synchronising; a straggler factor > 1 is added as a sleep afterwards;
  push     encode every shard's gradient for the wire (device -> pinned host memory on CUDA),
           send them all, and wait until the last is delivered. With communication.overlap a
           hook after each parameter's gradient sends a shard's push as soon as all of it exists.

Scenario faults: a worker that crashes at step k loses its parameters; with restart_after_s it
sleeps that long and redoes step k from a fresh pull, without it sends LEAVE to its shards (they
take it out of the sync rule) and stops.

Testing hook: `PSREAL_FAULT=worker:P:step:N:raise|kill|exit|hang` makes worker process P fail at
the start of step N (see psreal/roles.py, `inject_fault`).
"""

from __future__ import annotations

import queue
import resource
import time

import torch

from pssim import wire
from pssim.draws import compute_factors, straggle_delay
from pssim.records import Busy

from . import msgtrace
from .codec import decode_dense, encode_dense, encode_push
from .models import TORCH_DTYPES, build_model, local_batch, synthetic_data
from .pipeline_mail import Mailbox
from .roles import RoleContext, inject_fault

REPLY_TIMEOUT_S = 300.0


class WorkerRole:
    def __init__(self, ctx: RoleContext, proc: int) -> None:
        self.ctx, self.p = ctx, proc
        scn = ctx.scn
        self.P = scn.pipeline.stages
        self.replica, self.stage = divmod(proc, self.P)
        self.first = self.stage == 0
        self.last = self.stage == self.P - 1
        self.cuda = ctx.device == "cuda"
        if self.cuda:
            place = ctx.plan.placement(None, torch.cuda.device_count())
            self.dev = torch.device("cuda", place.device_of_proc[proc])
            torch.cuda.set_device(self.dev)
        else:
            self.dev = torch.device("cpu")
        self.rss0 = _rss_bytes()
        a, b = ctx.plan.bounds[self.stage]
        self.model = build_model(scn.model, scn.seed, a, b).to(self.dev)
        self.params = list(self.model.parameters())
        wl = ctx.plan.workload
        gidx = [i for i, q in enumerate(wl.params) if a <= q.unit < b]
        local = {g: i for i, g in enumerate(gidx)}
        for g, prm in zip(gidx, self.params, strict=True):  # the layout pssim computed is what runs
            assert tuple(prm.shape) == wl.params[g].shape, (wl.params[g], prm.shape)
        shards = ctx.plan.shards.shards
        self.shards = ctx.plan.topology.shards_of[proc]
        self.parts = {
            s: [(local[q.param], q.offset, q.numel) for q in shards[s] if a <= q.unit < b]
            for s in self.shards
        }
        x, y = synthetic_data(scn.model, scn.seed, self.replica, scn.training.samples_per_worker)
        self.x, self.y = x.to(self.dev), y.to(self.dev)
        self.factors = compute_factors(scn)[self.replica, self.stage]
        self.replies: queue.SimpleQueue = queue.SimpleQueue()
        self.mail = Mailbox()
        comm = scn.communication
        self.codec = (comm.wire_dtype, comm.compression.kind, comm.compression.ratio)
        self.n_servers_ep = ctx.layout.n_procs
        if self.P > 1:
            mb = scn.training.batch_size // scn.pipeline.microbatches
            self.act_shape = [(mb, *self._out_shape(u)) for (_, u) in ctx.plan.bounds]
            self.actions = ctx.plan.schedule[self.stage]
        self._pinned: dict[tuple[int, int], torch.Tensor] = {}

    def _out_shape(self, unit_end: int) -> tuple[int, ...]:
        m = self.ctx.scn.model
        if m.kind == "transformer":
            return (m.seq_len, m.d_model)
        return (self.ctx.plan.workload.units[unit_end - 1].out_elems_per_sample,)

    # ----------------------------------------------------------------------- transfers
    def _to_host(self, t: torch.Tensor, slot: int) -> torch.Tensor:
        """Stage a CUDA byte tensor through a reused pinned host buffer (no-op on CPU)."""
        if not t.is_cuda:
            return t
        key = (slot, t.numel())
        buf = self._pinned.get(key)
        if buf is None:
            buf = self._pinned[key] = torch.empty(t.numel(), dtype=torch.uint8, pin_memory=True)
        buf.copy_(t, non_blocking=True)
        torch.cuda.current_stream(
            self.dev
        ).synchronize()  # note: a CPU-GPU sync point, the bytes must be on the host
        return buf

    def _server_ep(self, s: int) -> int:
        return self.n_servers_ep + s

    def _unpack(self, s: int, payload: torch.Tensor) -> None:
        vals = decode_dense(
            payload.to(self.dev, non_blocking=True) if self.cuda else payload, self.codec[0]
        )
        pos = 0
        with torch.no_grad():
            for li, off, n in self.parts[s]:
                self.params[li].view(-1)[off : off + n].copy_(vals[pos : pos + n])
                pos += n

    def _pack(self, s: int) -> torch.Tensor:
        grads = [self.params[li].grad.view(-1)[off : off + n] for li, off, n in self.parts[s]]  # type: ignore[union-attr]
        return self._to_host(encode_push(grads, *self.codec), s)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.dev)

    # ---------------------------------------------------------------------------- steps
    def run(self) -> None:
        ctx, scn, rec, p = self.ctx, self.ctx.scn, self.ctx.records, self.p
        T = rec.times
        tr = ctx.transport
        for s in self.shards:
            tr.receive_from(self._server_ep(s), self.replies.put, pin=self.cuda)
        if self.P > 1:
            if not self.first:
                tr.receive_from(p - 1, self.mail.put, pin=self.cuda)
            if not self.last:
                tr.receive_from(p + 1, self.mail.put, pin=self.cuda)
        fixed = scn.compute.step_time_s
        B = scn.training.batch_size
        versions: dict[int, int] = {}
        who = ctx.layout.describe(ctx.rank, self.P)
        crashes = scn.crashes_of(self.replica)
        overlap = scn.communication.overlap
        if overlap:
            self._hook_grads()
        for step in range(scn.training.steps):
            inject_fault("worker", p, step, who)  # testing hook (PSREAL_FAULT); no-op otherwise
            if step in crashes:  # scenario faults: crash as this step is reached, losing the state
                self._lose_state()
                restart_after = crashes[step]
                if restart_after is None:  # for good: the shards take it out of the sync rule
                    for h in [
                        tr.send(self._server_ep(s), wire.LEAVE, step=step) for s in self.shards
                    ]:
                        h.wait()
                    ctx.control.progress(scn.training.steps)
                    break
                time.sleep(restart_after)  # down, then back with a fresh pull
            # ---- pull
            sent0 = tr.bytes_sent
            T["pull_start_s"][p, step] = time.monotonic()
            reqs = [tr.send(self._server_ep(s), wire.PULL, step=step) for s in self.shards]
            wait = 0.0
            for _ in self.shards:
                try:
                    msg = self.replies.get(timeout=REPLY_TIMEOUT_S)
                except queue.Empty:
                    raise TimeoutError(
                        f"no pull reply within {REPLY_TIMEOUT_S:.0f} s at step {step}"
                    ) from None
                if msg.kind == -1:
                    raise tr.receive_failed(msg.src)
                s = msg.src - self.n_servers_ep
                self._unpack(s, msg.payload)
                versions[s] = msg.version
                wait = max(wait, msg.aux * 1e-6)
            self._sync()
            for h in reqs:
                h.wait()
            T["pull_end_s"][p, step] = time.monotonic()
            T["wait_s"][p, step] = wait
            # ---- compute
            T["compute_start_s"][p, step] = time.monotonic()
            if msgtrace.ENABLED:  # the clocks are read only when tracing
                msgtrace.mark("cpu_compute_start", p, step, time.thread_time(), time.process_time())
            xb, yb = local_batch(self.x, self.y, step, B)
            if self.P == 1:
                t0 = time.monotonic()
                self.model.zero_grad(set_to_none=True)
                if overlap:  # the hooks push each shard's gradient as soon as backward has made it
                    self._overlap = {
                        "step": step,
                        "versions": versions,
                        "sends": [],
                        "first": None,
                        "left": dict(self._params_needed),
                    }
                loss = self.model.loss(self.model(xb), yb)
                loss.backward()
                self._sync()
                took = time.monotonic() - t0
                _sleep(self._extra(took, step, fixed))
                rec.loss[p, step] = float(loss.detach())
            else:
                self._pipeline_step(step, xb, yb)
            T["compute_end_s"][p, step] = time.monotonic()
            if msgtrace.ENABLED:  # the clocks are read only when tracing
                msgtrace.mark("cpu_compute_end", p, step, time.thread_time(), time.process_time())
            # ---- push
            if overlap:
                T["push_start_s"][p, step] = self._overlap["first"]
                sends = self._overlap["sends"]
            else:
                T["push_start_s"][p, step] = time.monotonic()
                payloads = {s: self._pack(s) for s in self.shards}
                sends = [
                    tr.send(
                        self._server_ep(s),
                        wire.PUSH,
                        step=step,
                        version=versions[s],
                        payload=payloads[s],
                    )
                    for s in self.shards
                ]
            for h in sends:
                h.wait()
            T["push_end_s"][p, step] = time.monotonic()
            if self.first:
                rec.samples[p, step] = B
            rec.bytes_sent[p, step] = tr.bytes_sent - sent0
            ctx.control.progress(step + 1)
        for s in self.shards:
            tr.stop(self._server_ep(s))
        if self.P > 1:
            if not self.first:
                tr.stop(p - 1)
            if not self.last:
                tr.stop(p + 1)
        tr.join()

    def _lose_state(self) -> None:
        """A crash loses the worker's model state (the next pull brings parameters back)."""
        with torch.no_grad():
            for prm in self.params:
                prm.zero_()
                prm.grad = None

    def _hook_grads(self) -> None:
        """communication.overlap: count, per shard, the parameters whose gradients it carries; a
        hook after each parameter's gradient is accumulated packs and sends a shard's push the
        moment its last parameter is done (backward runs from the last layer to the first)."""
        shards_of_param: dict[int, list[int]] = {}
        for s, parts in self.parts.items():
            for li in {li for li, _, _ in parts}:
                shards_of_param.setdefault(li, []).append(s)
        self._params_needed = {
            s: len({li for li, _, _ in parts}) for s, parts in self.parts.items()
        }
        tr = self.ctx.transport

        def ready(li: int) -> None:
            ov = self._overlap
            for s in shards_of_param.get(li, []):
                ov["left"][s] -= 1
                if ov["left"][s] == 0:
                    if ov["first"] is None:
                        ov["first"] = time.monotonic()
                    payload = self._pack(s)
                    ov["sends"].append(
                        tr.send(
                            self._server_ep(s),
                            wire.PUSH,
                            step=ov["step"],
                            version=ov["versions"][s],
                            payload=payload,
                        )
                    )

        for li, prm in enumerate(self.params):
            prm.register_post_accumulate_grad_hook(lambda _p, li=li: ready(li))

    def _extra(self, took: float, step: int, fixed: float | None) -> float:
        f = float(self.factors[step])
        if fixed is not None:  # compute.step_time_s: the step takes that long, times the factor
            return max(0.0, fixed * f - took)
        return straggle_delay(took, f)

    def _pipeline_step(self, step: int, xb: torch.Tensor, yb: torch.Tensor) -> None:
        ctx, p, rec, tr = self.ctx, self.p, self.ctx.records, self.ctx.transport
        M = ctx.scn.pipeline.microbatches
        wd = TORCH_DTYPES[self.codec[0]]
        cdt = TORCH_DTYPES[ctx.scn.model.dtype]
        xs, ys = xb.chunk(M), yb.chunk(M)
        inputs: dict[int, torch.Tensor] = {}
        outputs: dict[int, torch.Tensor] = {}
        sends = []
        loss_sum = 0.0
        self.model.zero_grad(set_to_none=True)
        for kind, m in self.actions:
            if kind == "F":
                if self.first:
                    inp = xs[m]
                else:
                    msg = self.mail.get((wire.ACT, step, m))
                    inp = decode_dense(msg.payload.to(self.dev, non_blocking=True), self.codec[0])
                    inp = inp.view(self.act_shape[self.stage - 1]).to(cdt).requires_grad_(True)
                t0 = time.monotonic()
                out = self.model(inp)
                if self.last:
                    out = self.model.loss(out, ys[m]) / M
                self._sync()
                t1 = time.monotonic()
                _sleep(straggle_delay(t1 - t0, float(self.factors[step])))
                rec.busy.append(Busy(p, step, t0, time.monotonic()))
                inputs[m], outputs[m] = inp, out
                if not self.last:
                    payload = self._to_host(
                        encode_dense(out.detach().reshape(-1), self.codec[0]), 1000 + m
                    )
                    sends.append(tr.send(p + 1, wire.ACT, step=step, payload=payload, aux=m))
            else:
                t0 = time.monotonic()
                if self.last:
                    outputs[m].backward()
                    loss_sum += float(outputs[m].detach())
                else:
                    msg = self.mail.get((wire.ACT_GRAD, step, m))
                    g = decode_dense(
                        msg.payload.to(self.dev, non_blocking=True), self.codec[0]
                    ).view(outputs[m].shape)
                    t0 = time.monotonic()
                    outputs[m].backward(g.to(outputs[m].dtype))
                self._sync()
                t1 = time.monotonic()
                _sleep(straggle_delay(t1 - t0, float(self.factors[step])))
                rec.busy.append(Busy(p, step, t0, time.monotonic()))
                if not self.first:
                    grad_in = inputs[m].grad
                    payload = self._to_host(
                        encode_dense(grad_in.reshape(-1).to(wd), self.codec[0]), 2000 + m
                    )  # type: ignore[union-attr]
                    sends.append(tr.send(p - 1, wire.ACT_GRAD, step=step, payload=payload, aux=m))
                del inputs[m], outputs[m]
        for h in sends:
            h.wait()
        if self.last:
            rec.loss[p, step] = loss_sum

    def peak_memory(self) -> int:
        if self.cuda:
            return int(torch.cuda.max_memory_allocated(self.dev))
        return max(0, _rss_bytes() - self.rss0)


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sleep(s: float) -> None:
    if s > 0:
        time.sleep(s)
