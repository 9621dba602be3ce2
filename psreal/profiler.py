"""`psreal profile`: measure what the real backend costs on this host, for the simulator.

What it measures, each with the very code the roles run, on one core with one torch thread (as
a role runs), taking the median of repeated timings after warm-up:

- step_compute_s: zero_grad + forward + loss + backward of the whole model at `batch_size` on
  the device (synchronised on CUDA); for pipelines, per stage and per microbatch, the forward
  and the backward separately.
- ops, each fitted as seconds = a + b * n over partition sizes n (see pssim.costs.OPS), and for
  the ops psreal runs partition by partition as a once per call plus p + b * n per partition:
  worker_pack (encode a gradient partition for the wire, staged to pinned host memory on CUDA),
  worker_unpack (wire values into the model's parameters), server_accumulate (decode + add),
  server_apply (decode + one optimiser step), server_update (one optimiser step), server_reply
  (parameters to the wire dtype).
- msg_overhead_s: the transport's fixed cost per message beyond the emulated link time, from a
  ping-pong between two processes through the real Transport and link arbiter over an infinitely
  fast link (half the round trip). It does not depend on the scenario and is cached per host.
- cores: the cores this process may run on (the simulator shares them among roles as psreal's
  placement pins them).

The profile is written (atomically) to the per-host cache pssim reads with `compute.profile: auto`,
or to `--out`.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from pssim.costs import OPS, stage_unit_bounds
from pssim.profile import (
    ARBITER_SLEEP_BINS_S,
    CALIBRATION_WARMUP,
    LinearCost,
    Profile,
    cache_path,
    calibration_scenario,
    host_cache_path,
    host_cpu_slice_s,
    host_id,
    load_profile,
    profile_key,
    sleep_bin,
)
from pssim.results import write_atomic_text
from pssim.scenario import Scenario
from pssim.sharding import plan_shards
from pssim.workload import build_workload

from .codec import decode_dense, decode_push, encode_dense, encode_push
from .models import TORCH_DTYPES, build_model, local_batch, synthetic_data
from .roles import host_cores, set_threads

_FLUSH: dict[str, torch.Tensor] = {}


def _cold(device: torch.device | None = None) -> None:
    """Evict the caches, as a role finds them after its messages were exchanged and the other
    processes on its core ran: write a buffer twice the size of the last-level cache (64 MiB;
    on CUDA also one larger than the GPU's L2). Every timing below starts cold."""
    buf = _FLUSH.get("cpu")
    if buf is None:
        buf = _FLUSH["cpu"] = torch.empty(16 * 1024 * 1024)
    buf.add_(1.0)
    if device is not None and device.type == "cuda":
        g = _FLUSH.get("cuda")
        if g is None:
            g = _FLUSH["cuda"] = torch.empty(32 * 1024 * 1024, device=device)
        g.add_(1.0)


def _timeit(
    fn: Callable[[], Any],
    sync: Callable[[], None],
    min_time: float = 0.1,
    max_iters: int = 60,
    warmup: int = 2,
    device: torch.device | None = None,
) -> float:
    """Median seconds of `fn` from cold caches (host-side operations: their typical cost)."""
    return statistics.median(_samples(fn, sync, min_time, max_iters, warmup, device=device))


def _samples(
    fn: Callable[[], Any],
    sync: Callable[[], None],
    min_time: float = 0.2,
    max_iters: int = 200,
    warmup: int = 3,
    before: Callable[[], None] | None = None,
    device: torch.device | None = None,
) -> list[float]:
    """Seconds of repeated runs of `fn` after warm-up (synchronised), each from cold caches
    (`before` runs first, untimed)."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_iters and (len(times) < 8 or time.perf_counter() - start < min_time):
        if before is not None:
            before()
        _cold(device)
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def _fit(ns: list[int], ts: list[float]) -> LinearCost:
    """Least squares a + b*n with a, b >= 0."""
    x, y = np.asarray(ns, float), np.asarray(ts, float)
    A = np.stack([np.ones_like(x), x], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    if a < 0:
        a, b = 0.0, float((x @ y) / (x @ x))
    if b < 0:
        a, b = float(y.mean()), 0.0
    return LinearCost(a=float(a), b=float(b))


def _sizes(scn: Scenario) -> list[int]:
    parts = sorted({p.numel for p in plan_shards(scn).partitions})
    top = max(parts)
    geo = [int(x) for x in np.geomspace(min(1000, top), top, 5)]
    return sorted(set(geo + parts[:3] + parts[-2:]))


def _worker_compute(
    scn: Scenario, device: torch.device, seed: int
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(step, refresh) of a worker's model built with `seed`: `step` is what a worker's compute
    phase does (psreal/worker.py: batch, zero_grad, forward, loss, backward, loss read back),
    each call on the next batch; `refresh` writes new parameters, as a pull does."""
    spec, B = scn.model, scn.training.batch_size
    x, y = synthetic_data(spec, scn.seed, 0, scn.training.samples_per_worker)
    x, y = x.to(device), y.to(device)
    model = build_model(spec, seed).to(device)
    counter = iter(range(1 << 30))

    def step() -> None:
        xs, ys = local_batch(x, y, next(counter), B)
        model.zero_grad(set_to_none=True)
        loss = model.loss(model(xs), ys)
        loss.backward()
        float(loss.detach())

    fresh = [p.detach().clone() for p in model.parameters()]

    def refresh() -> None:
        with torch.no_grad():
            for p, q in zip(model.parameters(), fresh, strict=True):
                p.copy_(q)

    return step, refresh


def measure_compute(
    scn: Scenario, device: torch.device
) -> tuple[float, list[float], list[float], dict[str, Any]]:
    spec, B = scn.model, scn.training.batch_size
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    # compute: the mean (what throughput sees) and the samples themselves (the simulator draws
    # each step's natural variation from them)
    step, refresh = _worker_compute(scn, device, scn.seed)
    samples = _samples(step, sync, min_time=1.5, max_iters=150, before=refresh, device=device)
    step_s = statistics.fmean(samples)
    fwd, bwd = [], []
    P, M = scn.pipeline.stages, scn.pipeline.microbatches
    if P > 1:
        mb = B // M
        x, y = synthetic_data(spec, scn.seed, 0, scn.training.samples_per_worker)
        xb, yb = local_batch(x.to(device), y.to(device), 0, B)
        xm, ym = xb[:mb], yb[:mb]
        cdt = TORCH_DTYPES[spec.dtype]
        inp = xm
        for k, (a, b) in enumerate(stage_unit_bounds(scn)):
            stage = build_model(spec, scn.seed, a, b).to(device)
            if k > 0:
                inp = inp.detach().to(cdt).requires_grad_(True)
            state: dict[str, Any] = {}
            last = k == P - 1

            def f(stage=stage, inp=inp, last=last, state=state) -> None:  # noqa: ANN001
                out = stage(inp)
                state["out"] = stage.loss(out, ym) / M if last else out

            fwd.append(statistics.fmean(_samples(f, sync, min_time=0.3, device=device)))
            out_shape = state["out"].shape
            g = (
                torch.randn(out_shape, device=device, dtype=state["out"].dtype)
                if not last
                else None
            )

            def fb(stage=stage, inp=inp, last=last, g=g) -> None:  # noqa: ANN001
                out = stage(inp)
                out = stage.loss(out, ym) / M if last else out
                out.backward() if last else out.backward(g)

            fb_s = statistics.fmean(_samples(fb, sync, min_time=0.3, device=device))
            bwd.append(max(fb_s - fwd[-1], 1e-7))
            with torch.no_grad():
                inp = stage(inp) if not last else inp
    return step_s, fwd, bwd, {"step_compute_s": step_s, "compute_samples_s": samples}


PARTS_K = 4  # partitions per call in the second timing of an op psreal runs partition by partition


def _fit_parts(ns: list[int], one: list[float], many: list[float], k: int) -> LinearCost:
    """a, p, b of an op run partition by partition, from calls on one partition of n elements
    (a + p + b n) and on k of them (a + k (p + b n)): the difference gives p + b n per partition,
    the rest of the one-partition call is the call's own a (all >= 0)."""
    per = _fit(ns, [(t_k - t_1) / (k - 1) for t_1, t_k in zip(one, many, strict=True)])
    a = max(0.0, statistics.median(t - per.a - per.b * n for n, t in zip(ns, one, strict=True)))
    return LinearCost(a=a, p=per.a, b=per.b)


def measure_ops(
    scn: Scenario, device: torch.device
) -> tuple[dict[str, LinearCost], dict[str, Any]]:
    """Each host op as psreal calls it, on one partition of each size and, for the ops psreal runs
    partition by partition (`per_partition_ops`), also on PARTS_K partitions in one call: a call
    starts from cold caches but its later partitions find them warm, so a per-call cost and a
    per-partition one are told apart (`_fit_parts`) instead of charging every partition the cold
    start."""
    from pssim.costs import per_partition_ops

    comm = scn.communication
    wire_dtype, kind, ratio = comm.wire_dtype, comm.compression.kind, comm.compression.ratio
    cdt = TORCH_DTYPES[scn.model.dtype]
    cuda = device.type == "cuda"
    opt = scn.training.optimizer
    partitioned = per_partition_ops(kind)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def optimiser(p: torch.nn.Parameter) -> torch.optim.Optimizer:
        if opt.name == "adam":
            return torch.optim.Adam(
                [p], lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay
            )
        return torch.optim.SGD([p], lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)

    def calls(n: int, k: int) -> dict[str, Callable[[], Any]]:
        """The ops on a message of k partitions of n elements, as the roles run them."""
        grads = [torch.randn(n, device=device, dtype=cdt) for _ in range(k)]
        params = [torch.randn(n, device=device, dtype=cdt) for _ in range(k)]
        pinned = [torch.empty(0)]

        def pack() -> torch.Tensor:  # psreal/worker.py _pack
            b = encode_push(grads, wire_dtype, kind, ratio)
            if cuda:
                if pinned[0].numel() != b.numel():
                    pinned[0] = torch.empty(b.numel(), dtype=torch.uint8, pin_memory=True)
                pinned[0].copy_(b, non_blocking=True)
                torch.cuda.current_stream(device).synchronize()
                return pinned[0]
            return b

        dense = encode_dense(torch.randn(k * n), wire_dtype)

        def unpack() -> None:  # psreal/worker.py _unpack: the reply's values into parameter slices
            vals = decode_dense(dense.to(device, non_blocking=True) if cuda else dense, wire_dtype)
            with torch.no_grad():
                for i, p in enumerate(params):
                    p.copy_(vals[i * n : (i + 1) * n])

        payload = encode_push([torch.randn(n) for _ in range(k)], wire_dtype, kind, ratio)
        numels = [n] * k
        acc = torch.zeros(k * n)
        p = torch.nn.Parameter(torch.randn(k * n))
        o = optimiser(p)
        grad = torch.randn(k * n) * 1e-3

        def update() -> None:
            p.grad = grad
            o.step()
            p.grad = None

        def apply() -> None:  # psreal/server.py: decode, then the optimiser's step
            p.grad = decode_push(payload, numels, wire_dtype, kind, ratio)
            o.step()
            p.grad = None

        return {
            "worker_pack": pack,
            "worker_unpack": unpack,
            "server_accumulate": lambda: acc.add_(
                decode_push(payload, numels, wire_dtype, kind, ratio)
            ),
            "server_apply": apply,
            "server_update": update,
            "server_reply": lambda: encode_dense(p.data, wire_dtype, copy=True),
        }

    def timed(
        op: str, fn: Callable[[], Any]
    ) -> float:  # a worker's ops run on its device, a shard's on the host
        return (
            _timeit(fn, sync, device=device)
            if op.startswith("worker")
            else _timeit(fn, lambda: None)
        )

    sizes = _sizes(scn)
    raw: dict[str, list[float]] = {k: [] for k in OPS}
    raw_k: dict[str, list[float]] = {k: [] for k in OPS if k in partitioned}
    for n in sizes:
        for op, fn in calls(n, 1).items():
            raw[op].append(timed(op, fn))
        if raw_k:
            fns = calls(n, PARTS_K)
            for op in raw_k:
                raw_k[op].append(timed(op, fns[op]))
    ops = {
        k: _fit_parts(sizes, v, raw_k[k], PARTS_K) if k in raw_k else _fit(sizes, v)
        for k, v in raw.items()
    }
    return ops, {
        "sizes": sizes,
        **raw,
        "parts_k": PARTS_K,
        **{f"{k}_x{PARTS_K}": v for k, v in raw_k.items()},
    }


# ------------------------------------------------------------------------- transport
_STREAM_SIZES = (64, 16_384, 262_144, 1_048_576, 4_194_304)


def _stream_reps(n: int) -> int:
    return max(20, min(2000, int(2e8 // max(n, 1))))


def _transport_child(rank: int, world: int, init_method: str, n_ping: int) -> None:
    """Ranks 1 and 2 (endpoints 0 and 1) exercise the real Transport; results go to rank 0."""
    import queue
    import resource

    import torch.distributed as dist

    from pssim import wire

    from .control import ControlClient
    from .launch import _set_pdeathsig
    from .transport import Transport

    _set_pdeathsig()
    set_threads()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[(rank - 1) % host_cores()]})
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    obj: list[Any] = [None]
    dist.broadcast_object_list(obj, src=0)
    ep, peer = rank - 1, 2 - rank
    ctl = ControlClient(obj[0], rank, ep)
    out: dict[str, Any] = {}

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    for emulate in (False, True):
        tr = Transport(ep, lambda e: e + 1, ctl, emulate=emulate)
        q: queue.SimpleQueue = queue.SimpleQueue()
        tr.receive_from(peer, q.put)
        dist.barrier()
        rtts = []
        c_ping = cpu()
        for i in range(n_ping):  # header-only ping-pong: latency and CPU of the code path
            if ep == 0:
                t0 = time.perf_counter()
                tr.send(1, wire.PULL, step=i).wait()
                q.get()
                rtts.append(time.perf_counter() - t0)
            else:
                q.get()
                tr.send(0, wire.REPLY, step=i).wait()
        mode = "emulated" if emulate else "plain"
        out[f"rtt_{mode}"] = rtts[n_ping // 10 :]
        out[f"ping_cpu_{mode}"] = (cpu() - c_ping) / (2 * n_ping)  # per message sent or received
        # one-way streams: CPU seconds per message at each end, by size
        for n in _STREAM_SIZES:
            reps = _stream_reps(n)
            payload = torch.zeros(n, dtype=torch.uint8)
            dist.barrier()
            c0, t0 = cpu(), time.perf_counter()
            if ep == 0:
                hs = [tr.send(1, wire.PUSH, step=i, payload=payload) for i in range(reps)]
                for h in hs:
                    h.wait()
                q.get()
            else:
                for _ in range(reps):
                    q.get()
                tr.send(0, wire.REPLY).wait()
            out[f"stream_{mode}_{n}"] = ((cpu() - c0) / reps, (time.perf_counter() - t0) / reps)
        tr.stop(peer)
        tr.join()
    ctl.bye()
    dist.gather_object(out, None, dst=0)
    dist.destroy_process_group()
    os._exit(0)


def measure_transport(n_ping: int = 300) -> dict[str, Any]:
    """Per-message and per-byte costs of the real transport between two pinned processes."""

    import torch.distributed as dist
    import torch.multiprocessing as mp

    from pssim.costs import LinkLayout

    from .control import ControlServer
    from .launch import local_rendezvous

    store, init = local_rendezvous("127.0.0.1", 3, 300.0)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_transport_child, args=(r, 3, init, n_ping), daemon=True) for r in (1, 2)
    ]
    for p in procs:
        p.start()
    links = LinkLayout([1e15] * 4, ["a.out", "a.in", "b.out", "b.in"], 2, None, 0.0, 0.0)
    server = ControlServer(
        links, core=sorted(os.sched_getaffinity(0))[-1]
    )  # pinned as in psreal runs
    server.start()
    arbiter: list[float] = []
    try:
        dist.init_process_group(
            "gloo", store=store, rank=0, world_size=3, timeout=datetime.timedelta(seconds=300)
        )
        dist.broadcast_object_list([server.addr], src=0)
        dist.barrier()  # plain ping-pong
        for _ in _STREAM_SIZES:
            dist.barrier()
        dist.barrier()  # emulated ping-pong
        arb_ping = server.cpu_s
        for _ in _STREAM_SIZES:  # emulated streams: the arbiter's CPU per message, by size
            dist.barrier()
            arbiter.append(server.cpu_s)
        out: list[Any] = [None, None, None]
        dist.gather_object({}, out, dst=0)
        arbiter.append(server.cpu_s)
        dist.destroy_process_group()
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        server.stop()
    snd, rcv = out[1], out[2]
    sizes = list(_STREAM_SIZES)
    fits = {
        mode: (
            _fit(sizes, [snd[f"stream_{mode}_{n}"][0] for n in sizes]),
            _fit(sizes, [rcv[f"stream_{mode}_{n}"][0] for n in sizes]),
        )
        for mode in ("plain", "emulated")
    }
    arb = [
        (b - a) / (_stream_reps(n) + 1)
        for a, b, n in zip(arbiter, arbiter[1:], sizes, strict=False)
    ]
    # a PS exchanges requests and replies one at a time: the fixed CPU per message is the
    # ping-pong's (each wake-up paid per message), the per-byte part the streams'
    arb_a = (arbiter[0] - arb_ping) / (2 * n_ping) if arbiter else 0.0

    def per_message(fit: LinearCost, mode: str, side: dict[str, Any]) -> LinearCost:
        return LinearCost(a=side[f"ping_cpu_{mode}"] / 2, b=fit.b)

    plain = statistics.median(snd["rtt_plain"]) / 2
    emulated = statistics.median(snd["rtt_emulated"]) / 2
    # the wire: wall seconds per message of a one-way stream, a + b * bytes; 1/b is the most the
    # host's transport moves for one connection however fast the emulated link is
    wire_fit = _fit(sizes, [snd[f"stream_plain_{n}"][1] for n in sizes])
    return {
        # CPU seconds per message at each end, a + b * bytes, without and with app emulation
        # (the latter adds the arbiter client's work: START, the DONE reader, the hand-over)
        "send_cpu": per_message(fits["plain"][0], "plain", snd),
        "recv_cpu": per_message(fits["plain"][1], "plain", rcv),
        "send_cpu_app": per_message(fits["emulated"][0], "emulated", snd),
        "recv_cpu_app": per_message(fits["emulated"][1], "emulated", rcv),
        # the link arbiter's own CPU per message (START, completion, two DONEs), on its core
        "arbiter_cpu": LinearCost(a=arb_a, b=_fit(sizes[: len(arb)], arb).b if arb else 0.0),
        # the critical path of a header-only message from send to hand-over (threads, gloo, and
        # with app emulation the arbiter's round trip): what a message takes beyond its link time
        "delay_none_s": plain,
        "delay_app_s": emulated,
        "wire_bytes_per_s": 1.0 / wire_fit.b if wire_fit.b > 0 else None,
        "samples": {
            "one_way_plain_s": plain,
            "one_way_emulated_s": emulated,
            "arbiter_cpu_per_message_s": dict(zip(sizes, arb, strict=False)),
            "streams": {
                mode: {
                    n: {"send": snd[f"stream_{mode}_{n}"], "recv": rcv[f"stream_{mode}_{n}"]}
                    for n in sizes
                }
                for mode in ("plain", "emulated")
            },
        },
    }


_COST_KEYS = ("send_cpu", "recv_cpu", "send_cpu_app", "recv_cpu_app", "arbiter_cpu")


def host_transport(force: bool = False) -> dict[str, Any]:
    path = host_cache_path("transport-v4", "any")
    if path.exists() and not force:
        d = json.loads(path.read_text())
        for k in _COST_KEYS:
            d[k] = LinearCost(**d[k])
        return d
    d = measure_transport()
    text = json.dumps(
        {**d, "host": host_id(), **{k: d[k].model_dump() for k in _COST_KEYS}}, indent=2
    )
    write_atomic_text(path, text)
    return d


# ------------------------------------------------------------------------- in situ
CALIBRATION_RUNS = 3  # the in-situ figures are medians over this many runs


# the shard's calls timed in the calibration run (its trace's spans): decode + add of a push, the
# optimiser step, encoding the reply
SERVER_SPAN_OPS = {
    "aggregate": "server_accumulate",
    "update": "server_update",
    "reply": "server_reply",
}
IN_SITU_FIGURES = (
    "compute_s",
    "msg_worker_a",
    "msg_server_a",
    "arbiter_wake_s",
    "pack_s",
    *(f"{op}_s" for op in SERVER_SPAN_OPS.values()),
)


def measure_in_situ(
    scn: Scenario,
    device: str,
    ops: dict[str, LinearCost],
    tr: dict[str, Any],
    runs: int = CALIBRATION_RUNS,
    previous: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """What the roles cost inside a real run, where microbenchmarks are too kind (caches cold after
    every message, threads waking, gloo's own threads): `runs` short real runs of
    `calibration_scenario`, then from each run's records and each role's measured CPU time

    - the compute phase's duration, step by step (the simulator's compute time and its noise);
    - the CPU each message costs at a worker and at a server end, beyond the host ops measured
      above and the per-byte cost measured by the transport streams: the worker sends a pull
      request and a push and receives a reply per step, the server the reverse, so
      a = (role CPU per step - ops - bytes x per-byte) / 3;
    - the link arbiter's CPU per wake-up (app emulation): messages that start or end at one
      instant are handled in one pass of its loop; and per pass by how long it slept before it
      (`arbiter_pass_costs`: a pass after a long sleep finds its caches cold and costs several
      times one right after another);
    - how long the worker takes from the end of its computation to its push's send (packing the
      gradient: `pack_times`, from the run's message trace), which a microbenchmark on warm,
      reused memory understates several-fold for a large gradient.

    Each figure is the median over the runs, these and `previous` ones (the `runs` list an
    earlier call returned under "samples": `psreal profile --more` adds runs made later, so that
    the figures span the host's drift over minutes); the compute samples are those of the run
    whose mean compute is the median.
    """
    per_run = [*previous, *(_in_situ_once(scn, device, ops, tr) for _ in range(max(1, runs)))]
    out: dict[str, Any] = {}
    for k in IN_SITU_FIGURES:
        vals = [r[k] for r in per_run if k in r]
        if vals:
            out[k] = statistics.median(vals)
    passes = [p for r in per_run for p in r.get("arbiter_passes", [])]
    if passes:
        out["arbiter_pass_s"] = arbiter_pass_costs(passes)
    mid = sorted(per_run, key=lambda r: r["compute_s"])[(len(per_run) - 1) // 2]
    out["compute_samples_s"] = mid["compute_samples_s"]
    out["send_b"], out["recv_b"] = per_run[0]["send_b"], per_run[0]["recv_b"]
    out["samples"] = {"runs": per_run}
    return out


def previous_in_situ_runs(prof: Profile) -> list[dict[str, Any]]:
    """The calibration runs behind a profile, as `measure_in_situ` takes them back (empty for a
    profile that did not keep each run's compute samples)."""
    runs = prof.samples.get("in_situ", {}).get("runs", [])
    keep = ("compute_samples_s", "send_b", "recv_b", "compute_s")
    return [r for r in runs if all(k in r for k in keep)]


def _in_situ_once(
    scn: Scenario, device: str, ops: dict[str, LinearCost], tr: dict[str, Any]
) -> dict[str, Any]:
    """One calibration run (see measure_in_situ)."""
    import csv
    import tempfile

    from pssim.costs import op_cost, per_partition_ops
    from pssim.sharding import plan_shards
    from pssim.wire import HEADER_BYTES, dense_payload_bytes, message_bytes, push_payload_bytes

    from .launch import run_local

    cal = calibration_scenario(scn)
    with tempfile.TemporaryDirectory(prefix="psreal-calibration-") as tmp:
        trace, arb_log = Path(tmp) / "trace", Path(tmp) / "arbiter-passes.json"
        # the roles it starts record their messages, the arbiter each pass of its loop
        with mock.patch.dict(
            os.environ, {"PSREAL_MSG_TRACE": str(trace), "PSREAL_ARBITER_LOG": str(arb_log)}
        ):
            folder, summary = run_local(cal, tmp, device, timeout_s=600, stall_s=120)
        passes = json.loads(arb_log.read_text()) if arb_log.is_file() else []
        with open(folder / "steps.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) >= CALIBRATION_WARMUP]
        packs = pack_times(trace, CALIBRATION_WARMUP) if trace.is_dir() else []
        shard_ops = server_span_times(folder / "trace.json", CALIBRATION_WARMUP)
    compute = [float(r["compute_end_s"]) - float(r["compute_start_s"]) for r in rows]
    steps = cal.training.steps
    cpu = summary.get("cpu_seconds", {})
    comm = cal.communication
    numels = [q.numel for q in plan_shards(cal).shards[0]]
    pp = per_partition_ops(comm.compression.kind)

    def op(name: str) -> float:  # as this run timed it where it did, else the microbenchmark's
        return shard_ops.get(f"{name}_s", op_cost(ops[name], name in pp, numels))

    push = message_bytes(
        push_payload_bytes(numels, comm.wire_dtype, comm.compression.kind, comm.compression.ratio)
    )
    reply = message_bytes(dense_payload_bytes(sum(numels), comm.wire_dtype))
    app = cal.cluster.network.emulation == "app"
    send_b, recv_b = (
        (tr["send_cpu_app"].b, tr["recv_cpu_app"].b)
        if app
        else (tr["send_cpu"].b, tr["recv_cpu"].b)
    )
    mean_compute = statistics.fmean(compute)
    pack = statistics.median(packs) if packs else op("worker_pack")
    worker = (
        cpu.get("core0", 0.0) / steps
        - mean_compute
        - pack
        - op("worker_unpack")
        - send_b * (HEADER_BYTES + push)
        - recv_b * reply
    )
    server = (
        cpu.get("core1", 0.0) / steps
        - op("server_accumulate")
        - op("server_update")
        - op("server_reply")
        - recv_b * (HEADER_BYTES + push)
        - send_b * reply
    )
    floor = 10e-6  # a message never costs less than this (guards the subtraction against noise)
    out = {
        "compute_s": mean_compute,
        "compute_samples_s": compute,
        "msg_worker_a": max(worker / 3, floor),
        "msg_server_a": max(server / 3, floor),
        "send_b": send_b,
        "recv_b": recv_b,
        "samples": {
            "cpu_seconds": cpu,
            "steps": steps,
            "arbiter_wakeups": summary.get("arbiter_wakeups"),
            "throughput_samples_per_s": summary["throughput_samples_per_s"],
        },
    }
    if app and "arbiter" in cpu and summary.get("arbiter_wakeups"):
        out["arbiter_wake_s"] = cpu["arbiter"] / summary["arbiter_wakeups"]
    if packs:
        out["pack_s"] = pack
    out.update(shard_ops)
    if app and passes:  # (sleep before, CPU) of each pass, to the microsecond
        out["arbiter_passes"] = [[round(a, 6), round(b, 7)] for a, b in passes]
    return out


def arbiter_pass_bins(passes: Sequence[Sequence[float]]) -> list[list[float]]:
    """The CPU seconds of the arbiter's passes, per bin of ARBITER_SLEEP_BINS_S of the sleep
    before each, from its log of (sleep before, CPU) per pass."""
    by: list[list[float]] = [[] for _ in ARBITER_SLEEP_BINS_S]
    for sleep, cpu in passes:
        by[sleep_bin(ARBITER_SLEEP_BINS_S, sleep)].append(cpu)
    return by


def arbiter_pass_costs(
    passes: Sequence[Sequence[float]], least: int = 5
) -> list[tuple[float, float]]:
    """(longest sleep of the bin, CPU seconds of a pass) per bin of ARBITER_SLEEP_BINS_S, from the
    arbiter's log of (sleep before, CPU) per pass over the calibration runs: the median CPU of
    each bin with at least `least` passes; a bin with fewer takes the line between its nearest
    such neighbours (or the nearest one, at either end); then made non-decreasing in the sleep
    (pool-adjacent-violators, weighted by passes): a longer sleep leaves colder caches, and a
    sparsely filled bin is noise. Empty if no bin has `least` passes."""
    by = arbiter_pass_bins(passes)
    known = [i for i, c in enumerate(by) if len(c) >= least]
    if not known:
        return []
    vals = np.interp(range(len(by)), known, [statistics.median(by[i]) for i in known])
    blocks: list[list[float]] = []  # pool adjacent violators: [value, weight, bins]
    for v, c in zip(vals, by, strict=True):
        blocks.append([float(v), float(max(len(c), 1)), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (v2, w2, n2), (v1, w1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    flat = [b[0] for b in blocks for _ in range(int(b[2]))]
    return list(zip(ARBITER_SLEEP_BINS_S, flat, strict=True))


def pack_times(trace: str | Path, warmup: int) -> list[float]:
    """From a message trace (psreal/msgtrace.py): for every worker step from `warmup` on, the
    seconds from the end of its computation to its first push's send (packing the gradient)."""
    import bisect

    from pssim import wire

    from . import msgtrace

    roles, _ = msgtrace.load(trace)
    out: list[float] = []
    for events in roles.values():
        pushes = sorted(e[0] for e in events if e[1] == "send" and e[5] == wire.PUSH)
        for e in events:
            if e[1] == "cpu_compute_end" and e[3] >= warmup:
                i = bisect.bisect_left(pushes, e[0])
                if i < len(pushes):
                    out.append(pushes[i] - e[0])
    return out


def fit_in_situ(
    bench: LinearCost, took_s: float, numels: list[int], per_partition: bool
) -> LinearCost:
    """An op's cost `bench` (a microbenchmark's, on warm reused memory) made to take `took_s` on
    the calibration's partitions `numels`, as the calibration run timed it: what it takes longer
    is charged per element (fresh memory and cold caches grow with the bytes), what it takes less
    is taken off the call's fixed part."""
    from pssim.costs import op_cost

    extra = took_s - op_cost(bench, per_partition, numels)
    if extra >= 0:
        return LinearCost(a=bench.a, p=bench.p, b=bench.b + extra / max(1, sum(numels)))
    return LinearCost(a=max(0.0, bench.a + extra), p=bench.p, b=bench.b)


def server_span_times(trace_file: str | Path, warmup: int) -> dict[str, float]:
    """From a calibration run's trace.json (one shard): the median wall time of the shard's
    decode + add of a push (`aggregate` spans), optimiser step (`update`) and reply encoding
    (`reply`), each after its first `warmup` spans, as `<op>_s` (`SERVER_SPAN_OPS`). The shard
    has its core to itself but for the arbiter's short passes, so wall time is its CPU. A reply
    that reused the encoding of the same version (0 s) is not an encoding and is skipped."""
    path = Path(trace_file)
    if not path.is_file():
        return {}
    by: dict[str, list[float]] = {k: [] for k in SERVER_SPAN_OPS}
    for e in sorted(
        json.loads(path.read_text()).get("traceEvents", []), key=lambda e: e.get("ts", 0.0)
    ):
        if (
            e.get("ph") == "X"
            and e.get("pid") == 2
            and e.get("name") in by
            and e.get("dur", 0.0) > 0.0
        ):
            by[e["name"]].append(e["dur"] * 1e-6)
    return {
        f"{SERVER_SPAN_OPS[k]}_s": statistics.median(v[warmup:])
        for k, v in by.items()
        if len(v) > warmup
    }


# the in-situ figure that times each op in the calibration run
IN_SITU_OPS = {"worker_pack": "pack_s", **{op: f"{op}_s" for op in SERVER_SPAN_OPS.values()}}


def ops_in_situ(
    ops: dict[str, LinearCost],
    situ: dict[str, Any],
    numels: list[int],
    per_partition: frozenset[str],
) -> dict[str, LinearCost]:
    """The ops the calibration run timed (`IN_SITU_OPS`: the worker's packing, the shard's calls)
    made to cost that on its partitions `numels` (`fit_in_situ`: an excess per element, a
    shortfall off the fixed part). `server_apply` (decode + one optimiser step, SSP and ASP) is
    not called under the calibration's BSP: it takes what accumulating (decode + add) and updating
    (the step) took beyond or short of their microbenchmarks, added to its own. The
    microbenchmarks' fits are kept as `<op>_bench` (`psreal profile --more` starts from them)."""
    from pssim.costs import op_cost

    def bench_s(op: str) -> float:
        return op_cost(ops[op], op in per_partition, numels)

    out: dict[str, LinearCost] = {}
    for op, figure in IN_SITU_OPS.items():
        if figure in situ and op in ops:
            out[f"{op}_bench"] = ops[op]
            out[op] = fit_in_situ(ops[op], situ[figure], numels, op in per_partition)
    timed = ("server_accumulate", "server_update")
    if "server_apply" in ops and all(IN_SITU_OPS[op] in situ and op in ops for op in timed):
        shift = sum(situ[IN_SITU_OPS[op]] - bench_s(op) for op in timed)
        out["server_apply_bench"] = ops["server_apply"]
        out["server_apply"] = fit_in_situ(
            ops["server_apply"],
            max(bench_s("server_apply") + shift, 0.0),
            numels,
            "server_apply" in per_partition,
        )
    return out


# ------------------------------------------------------------------------------- entry
def profile_scenario(
    scn: Scenario,
    device: str,
    out: str | None = None,
    quiet: bool = True,
    force_transport: bool = False,
    more: bool = False,
) -> tuple[Path, Profile]:
    """Measure the scenario's profile and write it (default: the per-host cache pssim reads).

    `more`: if that file holds a profile of the same key that kept its calibration runs, measure
    only CALIBRATION_RUNS more calibration runs and recompute the in-situ figures over all of them
    (the microbenchmarks are kept); else measure a whole profile. `pssim compare --repeats` does
    this once per round, so a profile's calibration spans the session as the real runs do.
    """
    set_threads()
    allowed = sorted(os.sched_getaffinity(0))
    cores = len(allowed)
    key = profile_key(scn, device)
    path = Path(out) if out else cache_path(key)
    old: Profile | None = None
    if more and path.is_file():
        try:
            old = load_profile(path)
        except (OSError, ValueError):
            old = None
        if old is not None and (
            old.key != json.loads(json.dumps(key)) or not previous_in_situ_runs(old)
        ):
            old = None
    tr = host_transport(force_transport)
    if old is not None:
        s1, s2 = dict(old.samples.get("compute", {})), old.samples.get("ops", {})
        step_s = float(s1.get("microbenchmark_step_compute_s", old.step_compute_s))
        fwd, bwd = list(old.stage_fwd_s), list(old.stage_bwd_s)
        ops = {
            k: v for k, v in old.ops.items() if k in OPS
        }  # its microbenchmarks; the message costs follow below
        for (
            k,
            v,
        ) in old.ops.items():  # the microbenchmarks' fits, before the in-situ times moved them
            if k.endswith("_bench") and k[: -len("_bench")] in ops:
                ops[k[: -len("_bench")]] = v
        situ = measure_in_situ(scn, device, ops, tr, previous=previous_in_situ_runs(old))
    else:
        old_aff = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {allowed[0]})  # one core, like a role
        try:
            dev = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
            step_s, fwd, bwd, s1 = measure_compute(scn, dev)
            ops, s2 = measure_ops(scn, dev)
        finally:
            os.sched_setaffinity(0, old_aff)
        situ = measure_in_situ(scn, device, ops, tr)
    app = scn.cluster.network.emulation == "app"
    # per message end: the fixed CPU measured in situ (worker and server ends apart), the per-byte
    # CPU from the transport's streams
    ops["msg_send"] = LinearCost(a=situ["msg_worker_a"], b=situ["send_b"])
    ops["msg_recv"] = LinearCost(a=situ["msg_worker_a"], b=situ["recv_b"])
    ops["msg_send_server"] = LinearCost(a=situ["msg_server_a"], b=situ["send_b"])
    ops["msg_recv_server"] = LinearCost(a=situ["msg_server_a"], b=situ["recv_b"])
    # an end that is already awake (working on another message) pays what a message costs in a
    # back-to-back stream: the CPU per message of the streams' smallest messages, never more
    # than the in-situ cost of a message that wakes its end
    stream = tr["samples"]["streams"]["emulated" if app else "plain"]
    smallest = min(stream, key=int)
    ops["msg_send_busy"] = LinearCost(
        a=min(stream[smallest]["send"][0], situ["msg_worker_a"]), b=situ["send_b"]
    )
    ops["msg_recv_busy"] = LinearCost(
        a=min(stream[smallest]["recv"][0], situ["msg_worker_a"]), b=situ["recv_b"]
    )
    if app:  # the arbiter's CPU per wake-up (messages starting or ending at one instant share one)
        ops["arbiter"] = LinearCost(a=situ.get("arbiter_wake_s", tr["arbiter_cpu"].a))
    # the worker's packing and the shard's calls as the calibration run lived them (its one shard
    # holds every partition the worker pushes)
    from pssim.costs import per_partition_ops

    cal_numels = [q.numel for q in plan_shards(calibration_scenario(scn)).shards[0]]
    ops.update(
        ops_in_situ(ops, situ, cal_numels, per_partition_ops(scn.communication.compression.kind))
    )
    if scn.pipeline.stages == 1:  # the compute phase as a real worker lives it
        step_s, s1 = (
            situ["compute_s"],
            {
                **s1,
                "microbenchmark_step_compute_s": step_s,
                "compute_samples_s": situ["compute_samples_s"],
            },
        )
    wire_rate = tr.get("wire_bytes_per_s")
    delay = tr["delay_app_s"] if scn.cluster.network.emulation == "app" else tr["delay_none_s"]
    prof = Profile(
        key=key,
        host=host_id(),
        device_name=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        cores=cores,
        gpus=torch.cuda.device_count() if device == "cuda" else None,
        torch_version=torch.__version__,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        step_compute_s=step_s,
        compute_samples_s=s1["compute_samples_s"],
        stage_fwd_s=fwd,
        stage_bwd_s=bwd,
        ops=ops,
        msg_overhead_s=delay,
        transport_bytes_per_s=wire_rate,
        cpu_slice_s=host_cpu_slice_s(cores),
        arbiter_pass_s=situ.get("arbiter_pass_s", []) if app else [],
        samples={
            "compute": s1,
            "ops": s2,
            "transport": tr["samples"],
            "in_situ": situ["samples"],
            "model_params": build_workload(scn.model).numel,
        },
    )
    write_atomic_text(path, prof.model_dump_json(indent=2))
    return path, prof
