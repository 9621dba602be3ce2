"""What the parameter-server machinery costs a worker step, against a plain torch training loop.

The same model, batch, data and device, two ways:

- psreal: a 1-worker, 1-server `psreal run` with `emulation: none`; a worker step is pull (request,
  receive and unpack the parameters) + forward/backward + push (pack and send the gradient), taken
  from steps.csv (push_end_s - pull_start_s) over the measured steps; the server applies SGD on its
  own core meanwhile.
- plain: one process, the process set-up of a psreal role (one intra-op thread, pinned to the core
  the worker gets), `zero_grad; loss.backward(); optimizer.step()` per step, timed the same way.

The model is compute-heavy for its size (an MLP over a large batch: ~52 GFLOP per step against
8.4 MB of parameters each way), so the PS overhead is measured where it should be small.
Goal: psreal's step <= 1.05 x the plain step. Prints both, with p50 and the overhead.

Usage: .venv/bin/python benchmarks/step_overhead.py [--steps N] [--batch B]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def scenario(steps: int, batch: int) -> Any:
    from pssim.scenario import scenario_from_dict

    return scenario_from_dict(
        {
            "name": "step-overhead",
            "seed": 0,
            "model": {"kind": "mlp", "input_dim": 1024, "hidden": [1024, 1024], "output_dim": 10},
            "training": {
                "batch_size": batch,
                "steps": steps,
                "warmup_steps": 3,
                "samples_per_worker": 4 * batch,
                "optimizer": {"name": "sgd", "lr": 0.01},
            },
            "cluster": {
                "workers": {"count": 1, "device": "cpu"},
                "servers": {"count": 1},
                "network": {"emulation": "none"},
            },
            "sync": {"mode": "bsp"},
        }
    )


def _plain(scn_json: str, q: Any) -> None:
    import os

    import torch

    from psreal.models import build_model, synthetic_data
    from psreal.roles import layout_of, pin_role, set_threads
    from pssim.scenario import Scenario

    scn = Scenario.model_validate_json(scn_json)
    set_threads()
    layout = layout_of(scn)
    pin_role(scn, 1 + layout.n_servers, layout, len(os.sched_getaffinity(0)))  # the worker's core
    model = build_model(scn.model, scn.seed)
    o = scn.training.optimizer
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum)
    B, N = scn.training.batch_size, scn.training.samples_per_worker
    x, y = synthetic_data(scn.model, scn.seed, 0, N)
    times = []
    for step in range(scn.training.steps):
        t0 = time.monotonic()
        idx = torch.arange(step * B, (step + 1) * B) % N
        model.zero_grad(set_to_none=True)
        loss = model.loss(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        float(loss.detach())
        times.append(time.monotonic() - t0)
    q.put(times[scn.training.warmup_steps :])


def plain_step_times(scn: Any) -> list[float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_plain, args=(scn.model_dump_json(), q))
    p.start()
    out = q.get(timeout=1200)
    p.join()
    return out


def psreal_step_times(scn: Any) -> tuple[list[float], list[float]]:
    from psreal.launch import run_local

    with tempfile.TemporaryDirectory() as out:
        folder, _ = run_local(scn, out, "cpu")
        with open(folder / "steps.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) >= scn.training.warmup_steps]
    step = [float(r["push_end_s"]) - float(r["pull_start_s"]) for r in rows]
    compute = [float(r["compute_end_s"]) - float(r["compute_start_s"]) for r in rows]
    return step, compute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="alternate plain/psreal this many times, keep the best",
    )
    args = ap.parse_args()
    scn = scenario(args.steps, args.batch)
    from pssim.workload import build_workload

    wl = build_workload(scn.model)
    print(
        f"model: mlp 1024-1024-1024-10, {wl.numel / 1e6:.2f} M parameters "
        f"({wl.numel * 4 / 1e6:.1f} MB each way), "
        f"batch {args.batch}, {wl.train_flops_per_sample * args.batch / 1e9:.1f} GFLOP per step, "
        f"{args.steps - 3} measured steps",
        flush=True,
    )
    best_plain: list[float] | None = None
    best_ps: tuple[list[float], list[float]] | None = None
    for _ in range(args.repeat):
        plain = plain_step_times(scn)
        ps = psreal_step_times(scn)
        if best_plain is None or statistics.median(plain) < statistics.median(best_plain):
            best_plain = plain
        if best_ps is None or statistics.median(ps[0]) < statistics.median(best_ps[0]):
            best_ps = ps
    assert best_plain is not None and best_ps is not None
    step, compute = best_ps
    pm, pp = statistics.mean(best_plain), statistics.median(best_plain)
    sm, sp = statistics.mean(step), statistics.median(step)
    print(
        f"plain torch loop : step mean {pm * 1e3:8.2f} ms  p50 {pp * 1e3:8.2f} ms"
        "  (fwd+bwd+SGD, one process)"
    )
    print(
        f"psreal worker    : step mean {sm * 1e3:8.2f} ms  p50 {sp * 1e3:8.2f} ms  "
        f"(of which compute {statistics.mean(compute) * 1e3:.2f} ms; pull+push the rest)"
    )
    print(f"overhead         : mean {sm / pm - 1:+.1%}  p50 {sp / pp - 1:+.1%}   (goal <= +5%)")


if __name__ == "__main__":
    main()
