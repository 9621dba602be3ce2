"""The real backend against a single-process reference, the simulator's byte counts and the sync
rules.

- BSP (DESIGN.md section 4): a server applies the sum of the W gradients of clock c in one
  optimiser step, so after k steps N workers over S shards hold exactly the parameters of one
  process that, each step, sums the W workers' gradients of their mean losses and calls
  torch.optim (SGD, SGD with momentum, Adam) once. The reference builds the model with
  `psreal.models.build_model(spec, seed)` and worker w's batches from
  `psreal.models.synthetic_data(spec, seed, w, samples_per_worker)`, indexed as psreal/worker.py
  does (samples [c*B, (c+1)*B) mod N at step c). Final parameters come from `--save-params`.
- Pipelining must not change the math: 2 stages x 2 microbatches (each microbatch's loss scaled
  by 1/M, so the gradients sum to the whole batch's) end where the unpipelined run ends.
- Staleness is recorded per gradient: 0 under BSP, within `pssim.sync.staleness_bound` under SSP,
  and steps.csv agrees with summary.json.
- Compressed and half-precision wires put on the wire exactly the bytes the simulator predicts
  (`bytes_sent_total` of sim and real are equal: both count with pssim.wire).
- The same scenario runs under torchrun (one rank per role) and reaches the same parameters.

Tiny models, a float32 wire and fast links keep each run to seconds; tolerances are torch's
float32 defaults (summation order differs between processes and the reference).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from psreal.launch import PARAMS_FILE, run_local
from psreal.models import build_model, synthetic_data
from pssim.run import run_sim
from pssim.scenario import Scenario, resolved_yaml
from pssim.sync import staleness_bound

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]


def reference_params(scn: Scenario, workers_at: Any = None) -> dict[str, torch.Tensor]:
    """One process, the same data and summed gradients, torch.optim on the whole model.

    `workers_at(step)`: the workers whose gradients step `step` sums (default: all of them)."""
    spec, tr = scn.model, scn.training
    model = build_model(spec, scn.seed)
    o = tr.optimizer
    if o.name == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        )
    B, N = tr.batch_size, tr.samples_per_worker
    data = [synthetic_data(spec, scn.seed, w, N) for w in range(scn.cluster.workers.count)]
    params = list(model.parameters())
    for step in range(tr.steps):
        idx = torch.arange(step * B, (step + 1) * B) % N
        total = [torch.zeros_like(p) for p in params]
        active = range(len(data)) if workers_at is None else workers_at(step)
        for x, y in (data[w] for w in active):
            model.zero_grad(set_to_none=True)
            model.loss(model(x[idx]), y[idx]).backward()
            for t, p in zip(total, params, strict=True):
                t.add_(p.grad)  # type: ignore[arg-type]
        for p, t in zip(params, total, strict=True):
            p.grad = t
        opt.step()
    return {k: v.detach().float() for k, v in model.named_parameters()}


def run_real(scn: Scenario, out: Path) -> tuple[Path, dict[str, Any]]:
    return run_local(scn, str(out), "cpu", timeout_s=180, stall_s=60, save_params=True)


def load_params(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / PARAMS_FILE)


def assert_same_params(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for name, w in want.items():
        torch.testing.assert_close(got[name], w, msg=lambda m, n=name: f"{n}: {m}")


def steps_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "steps.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bsp_sgd(
    tiny_scenario: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Scenario, Path, dict[str, Any]]:
    """2 workers over 2 shards, plain SGD, BSP: shared by the reference, pipeline and torchrun
    tests."""
    scn = tiny_scenario()
    folder, summary = run_real(scn, tmp_path_factory.mktemp("bsp"))
    return scn, folder, summary


def test_bsp_sgd_matches_the_single_process_reference(bsp_sgd: Any) -> None:
    scn, folder, summary = bsp_sgd
    assert_same_params(load_params(folder), reference_params(scn))
    assert summary["staleness"]["max"] == 0
    rows = steps_rows(folder)
    assert len(rows) == scn.cluster.workers.count * scn.training.steps
    assert {r["staleness"] for r in rows} == {"0"}
    assert [int(r["version_read"]) for r in rows if r["worker"] == "1"] == list(
        range(scn.training.steps)
    )
    # every role's own CPU time, workers first (2 workers over 2 shards)
    roles = summary["cpu_seconds_by_role"]
    assert list(roles) == ["worker0", "worker1", "server0", "server1"]
    assert all(v > 0 for v in roles.values())


@pytest.mark.parametrize(
    "overrides",
    [
        # momentum, 3 workers (summation order now matters), range sharding
        ["training.optimizer.momentum=0.9", "cluster.workers.count=3", "sharding.policy=range"],
        # Adam on a single shard
        ["training.optimizer.name=adam", "training.optimizer.lr=0.01", "cluster.servers.count=1"],
    ],
    ids=["momentum-3w-2s", "adam-2w-1s"],
)
def test_bsp_optimisers_match_the_single_process_reference(
    tiny_scenario: Any, tmp_path: Path, overrides: list[str]
) -> None:
    scn = tiny_scenario(*overrides)
    folder, summary = run_real(scn, tmp_path)
    assert_same_params(load_params(folder), reference_params(scn))
    assert summary["staleness"]["max"] == 0


def test_pipelining_does_not_change_the_math(
    bsp_sgd: Any, tiny_scenario: Any, tmp_path: Path
) -> None:
    scn, flat_folder, _ = bsp_sgd
    pipe = tiny_scenario("pipeline.stages=2", "pipeline.microbatches=2")
    folder, summary = run_real(pipe, tmp_path)
    assert summary["pipeline_stages"] == 2 and summary["microbatches"] == 2
    assert_same_params(load_params(folder), load_params(flat_folder))
    rows = steps_rows(folder)
    assert (
        len(rows) == 2 * 2 * scn.training.steps
    )  # one row per worker process (replica x stage) per step


@pytest.mark.parametrize(
    ("overrides", "mode"),
    [
        (
            [
                "sync.mode=ssp",
                "sync.staleness=1",
                "stragglers.slowdown={1: 3.0}",
                "communication.compression.kind=int8",
            ],
            "ssp",
        ),
        (
            [
                "sync.mode=asp",
                "stragglers.slowdown={0: 2.0}",
                "communication.compression.kind=topk",
                "communication.compression.ratio=0.1",
                "communication.wire_dtype=float16",
                "model.hidden=[33]",
            ],
            "asp",
        ),
    ],
    ids=["ssp1-int8", "asp-topk-fp16"],
)
def test_staleness_is_recorded_and_bounded_and_bytes_match_the_simulator(
    tiny_scenario: Any, tmp_path: Path, overrides: list[str], mode: str
) -> None:
    scn = tiny_scenario(*overrides, "training.steps=8")
    folder, real = run_real(scn, tmp_path / "real")
    _, sim = run_sim(scn, tmp_path / "sim")
    # bytes on the wire: both backends count with pssim.wire, the codec produces those sizes
    assert real["bytes_sent_total"] == sim["bytes_sent_total"]
    rows = steps_rows(folder)
    per_step = [int(r["staleness"]) for r in rows]
    assert len(per_step) == scn.cluster.workers.count * scn.training.steps
    assert min(per_step) >= 0
    measured = [int(r["staleness"]) for r in rows if int(r["step"]) >= scn.training.warmup_steps]
    assert real["staleness"]["max"] == max(measured)
    assert sum(real["staleness"]["histogram"].values()) >= len(measured)
    bound = staleness_bound(mode, scn.sync.staleness, scn.cluster.workers.count)
    if bound is not None:
        assert max(per_step) <= bound
    assert real["sync_mode"] == mode


def test_torchrun_runs_the_same_scenario(bsp_sgd: Any, tmp_path: Path) -> None:
    scn, flat_folder, _ = bsp_sgd
    file = tmp_path / "tiny.yaml"
    file.write_text(resolved_yaml(scn), encoding="utf-8")
    world = 1 + scn.cluster.servers.count + scn.cluster.workers.count
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc-per-node",
            str(world),
            "-m",
            "psreal.cli",
            "run",
            str(file),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            "--save-params",
            "--stall-timeout",
            "60",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "out" / scn.name / "real"
    for name in ("scenario.yaml", "steps.csv", "summary.json", "trace.json", PARAMS_FILE):
        assert (folder / name).is_file(), name
    assert_same_params(load_params(folder), load_params(flat_folder))
