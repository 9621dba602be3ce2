"""The link arbiter's CPU per pass of its loop, by how long it slept before the pass (from the
log of its passes the calibration runs keep)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from pssim.profile import ARBITER_SLEEP_BINS_S, sleep_bin


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
