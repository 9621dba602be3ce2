"""Timing for `psreal profile`: caches evicted before each run, the median of repeated
runs after warm-up, and least-squares linear fits (a + b * n) of the times."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pssim.profile import LinearCost

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
