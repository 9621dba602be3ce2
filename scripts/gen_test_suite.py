"""Draw the test half of the validation suite: scenarios the simulator was never tuned on.

    python scripts/gen_test_suite.py [--seed 2026] [--n 8] [--out scenarios/validation-test]

Each scenario is a seeded random draw over the scenario space the suite covers: sync mode (BSP,
SSP with a bound, ASP), workers and how many share a core, shards, links (bandwidth, latency),
model size and batch, optimiser, wire format and compression, stragglers and jitter, and now and
then a 2-stage pipeline. Only the number of steps is chosen after the draw, so that a real run
measures about `--seconds` of steps here: the steps are that time over the step time the target
view of the simulator predicts for the draw (no host model, no profile; not a fitted figure).

The set is drawn once and committed; the simulator is never tuned on it (`make validate-test`
measures it). Drawing again with the same seed gives the same files.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pssim.records import summarize
from pssim.scenario import scenario_from_dict
from pssim.sim import simulate

ROOT = Path(__file__).resolve().parents[1]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw(rng: np.random.Generator, index: int) -> dict[str, Any]:
    """One scenario of the space (steps still to be set)."""
    mode = str(rng.choice(["bsp", "ssp", "asp"]))
    workers = int(rng.choice([1, 2, 3, 4, 6, 8]))
    shards = int(rng.integers(1, 5))
    per_device = int(rng.choice([1, 2])) if workers > 1 else 1
    hidden = [[128], [256, 256], [512, 256], [1024, 512]][int(rng.integers(4))]
    stages = 2 if rng.random() < 0.15 and workers <= 4 else 1
    bw_w = round(_log_uniform(rng, 0.1, 5.0), 2)
    bw_s = round(bw_w * float(rng.choice([1.0, 2.0, 4.0])), 2)
    latency = int(rng.choice([50, 100, 200, 500]))
    comm: dict[str, Any] = {"wire_dtype": str(rng.choice(["float32", "float32", "float16"]))}
    u = rng.random()
    if u < 0.2:
        comm["compression"] = {"kind": "topk", "ratio": round(float(rng.uniform(0.05, 0.3)), 2)}
    elif u < 0.35:
        comm["compression"] = {"kind": "int8"}
    optimizer = [
        {"name": "sgd", "lr": 0.01},
        {"name": "sgd", "lr": 0.01, "momentum": 0.9},
        {"name": "adam", "lr": 0.001},
    ][int(rng.integers(3))]
    scn: dict[str, Any] = {
        "seed": index,
        "model": {"kind": "mlp", "input_dim": 784, "hidden": hidden, "output_dim": 10},
        "training": {
            "batch_size": int(rng.choice([32, 64, 128, 256])),
            "steps": 0,
            "warmup_steps": 5,
            "optimizer": optimizer,
        },
        "cluster": {
            "workers": {
                "count": workers,
                "device": "cpu",
                "per_device": per_device,
                "nic": {"bandwidth_gbps": bw_w, "latency_us": latency},
            },
            "servers": {"count": shards, "nic": {"bandwidth_gbps": bw_s, "latency_us": latency}},
        },
        "sync": {"mode": mode},
        "sharding": {
            "policy": str(rng.choice(["range", "round_robin", "greedy_bytes"])),
            "partition_bytes": int(rng.choice([100_000, 200_000, 400_000, 1_000_000])),
        },
        "communication": comm,
    }
    if mode == "ssp":
        scn["sync"]["staleness"] = int(rng.integers(1, 4))
    if stages > 1:
        scn["pipeline"] = {
            "stages": 2,
            "microbatches": int(rng.choice([2, 4])),
            "schedule": str(rng.choice(["gpipe", "1f1b"])),
        }
    v = rng.random()
    if v < 0.3 and workers > 1:
        scn["stragglers"] = {
            "slowdown": {int(rng.integers(workers)): round(float(rng.uniform(1.5, 3.0)), 1)}
        }
    elif v < 0.5:
        dist = str(rng.choice(["lognormal", "exponential"]))
        cv = round(float(rng.uniform(0.1, 0.4)), 2)
        scn["stragglers"] = {"jitter": {"distribution": dist, "cv": cv}}
    return scn


def _name(index: int, scn: dict[str, Any]) -> str:
    c = scn["cluster"]
    tags = []
    if "pipeline" in scn:
        tags.append("pipe")
    if "compression" in scn["communication"]:
        tags.append(scn["communication"]["compression"]["kind"])
    if "slowdown" in scn.get("stragglers", {}):
        tags.append("straggler")
    if "jitter" in scn.get("stragglers", {}):
        tags.append("jitter")
    body = f"{scn['sync']['mode']}-{c['workers']['count']}w{c['servers']['count']}s"
    return f"t{index:02d}-{body}" + "".join(f"-{t}" for t in tags)


def with_steps(scn: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Set the steps so that the target view predicts about `seconds` of measured steps."""
    probe = {**scn, "name": "probe", "training": {**scn["training"], "steps": 20}}
    probe["compute"] = {"profile": "none"}
    s = scenario_from_dict(probe, "<probe>")
    summary = summarize(s, *simulate(s))
    step_s = summary["step_time_s"]["mean"]
    steps = int(min(600, max(30, round(seconds / step_s))))
    return {**scn, "training": {**scn["training"], "steps": steps}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per real run")
    ap.add_argument("--out", default=str(ROOT / "scenarios" / "validation-test"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, args.n + 1):
        scn = with_steps(draw(rng, i), args.seconds)
        name = _name(i, scn)
        scn = {
            "name": name,
            "description": f"Test half of the validation suite: draw {i} of seed {args.seed} "
            "(scripts/gen_test_suite.py); never tuned on.",
            **scn,
        }
        scenario_from_dict(scn, name)  # valid, or this raises
        text = yaml.safe_dump(scn, sort_keys=False, default_flow_style=None, width=100)
        (out / f"{name}.yaml").write_text(text)
        print(f"{name}: {scn['training']['steps']} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
