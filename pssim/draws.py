"""Seeded random draws that both backends use: straggler and jitter factors per worker and step.

A worker process's compute in step c takes `t * factor[w, stage, c]`, where t is its compute time
without stragglers and factor = slowdown_w * (1 + J). J >= 0 is the jitter: exponential with mean
and standard deviation `cv`, or lognormal with mean and standard deviation `cv`, so the compute
time's standard deviation is `cv` times its jitter-free value (and its mean grows by the same).
A factor above 1 is realised as extra time after the real computation (`straggle_delay`): the
real backend sleeps it, the simulator waits it; neither holds the device meanwhile.
Each (worker, stage) has its own stream, numpy PCG64 seeded with (seed, 1, worker, stage), so
adding workers leaves the others' draws unchanged.

With a measured profile, the simulator also gives each step the compute's natural variation
(`natural_factors`): real compute times vary step to step, and that variation is what breaks the
lock-step of identical workers (under ASP it lets pushes and pulls of different workers overlap).
It is simulator-only, so it is what repeated simulator runs vary (`pssim.run.run_sim`): run 0
draws from stream (seed, 2, worker, stage), run k > 0 from (seed, 2, worker, stage, k); the
straggler and jitter draws, which the real backend shares, are the same in every run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .scenario import Scenario


def compute_factors(scn: Scenario) -> np.ndarray:
    """factor[w, stage, step] >= 1 for every worker process and step."""
    W, P, T = scn.cluster.workers.count, scn.pipeline.stages, scn.training.steps
    jit = scn.stragglers.jitter
    out = np.ones((W, P, T))
    for w in range(W):
        slow = scn.stragglers.slowdown.get(w, 1.0)
        for s in range(P):
            rng = np.random.Generator(np.random.PCG64([scn.seed, 1, w, s]))
            if jit.distribution == "exponential":
                j = rng.exponential(jit.cv, size=T)
            elif jit.distribution == "lognormal":
                sigma2 = np.log(2.0)  # std == mean
                j = rng.lognormal(np.log(jit.cv) - sigma2 / 2, np.sqrt(sigma2), size=T)
            else:
                j = np.zeros(T)
            out[w, s] = slow * (1.0 + j)
    return out


def natural_factors(scn: Scenario, samples: list[float] | None, draw: int = 0) -> np.ndarray | None:
    """factor[w, stage, step]: the compute's own step-to-step variation, drawn (seeded, stream
    (seed, 2, worker, stage), with `draw` appended for draws > 0) from measured timings and
    divided by their mean, so it is 1 on average. None without samples (a fixed step time or the
    roofline have none)."""
    if not samples:
        return None
    W, P, T = scn.cluster.workers.count, scn.pipeline.stages, scn.training.steps
    rel = np.asarray(samples, dtype=float)
    rel = rel / rel.mean()
    out = np.ones((W, P, T))
    for w in range(W):
        for s in range(P):
            rng = np.random.Generator(
                np.random.PCG64([scn.seed, 2, w, s] + ([draw] if draw else []))
            )
            out[w, s] = rel[rng.integers(0, rel.size, size=T)]
    return out


def straggle_delay(actual_compute_s: float, factor: float) -> float:
    """Extra wait after a computation that took `actual_compute_s`, to make it `factor` times
    longer."""
    return actual_compute_s * (factor - 1.0) if factor > 1.0 else 0.0
