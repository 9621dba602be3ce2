"""Microbenchmarks of the host ops (pssim.costs.OPS) as the roles call them, over partition
sizes, each fitted as seconds = a + b * n, and for the ops psreal runs partition by partition
as a once per call plus p + b * n per partition."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pssim.costs import OPS
from pssim.profile import LinearCost
from pssim.scenario import Scenario
from pssim.sharding import plan_shards

from ..codec import decode_dense, decode_push, encode_dense, encode_push
from ..models import TORCH_DTYPES
from .timing import _fit, _timeit


def _sizes(scn: Scenario) -> list[int]:
    parts = sorted({p.numel for p in plan_shards(scn).partitions})
    top = max(parts)
    geo = [int(x) for x in np.geomspace(min(1000, top), top, 5)]
    return sorted(set(geo + parts[:3] + parts[-2:]))


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
