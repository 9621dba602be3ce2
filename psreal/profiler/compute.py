"""The worker's compute step as `psreal profile` times it: zero_grad + forward + loss + backward
of the whole model, and for pipelines each stage's forward and backward per microbatch."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from pssim.costs import stage_unit_bounds
from pssim.scenario import Scenario

from ..models import TORCH_DTYPES, build_model, local_batch, synthetic_data
from .timing import _samples


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
