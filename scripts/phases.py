"""Per-worker phase times of simulated and real runs side by side (from their steps.csv).

    python scripts/phases.py results/validation/v05-ssp-4w2s-straggler [more scenario dirs...]

For each scenario directory `pssim compare` wrote (its `sim/` and `real/` runs, and the kept
repeats `real-repeat-1/`, ... when present), prints for every worker process the median over the
measured steps (after `training.warmup_steps`) of its pull (request to last reply unpacked),
compute (with any straggler sleep), push (pack to last push through) and whole cycle, in ms: one
row for the simulator and one per real run, then the simulator's difference from the median real
run. Where the throughput error comes from, phase by phase: no model is run here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml

PHASES = {
    "pull": ("pull_start_s", "pull_end_s"),
    "compute": ("compute_start_s", "compute_end_s"),
    "push": ("push_start_s", "push_end_s"),
}


def phases(run: Path, warmup: int) -> pd.DataFrame:
    """Median ms of each phase and of the cycle (one step start to the next), per worker process."""
    df = pd.read_csv(run / "steps.csv").sort_values(["worker", "stage", "step"])
    df["cycle"] = df.groupby(["worker", "stage"])["pull_start_s"].diff(-1).abs()
    df = df[df["step"] >= warmup]
    out = pd.DataFrame({name: (df[b] - df[a]) * 1e3 for name, (a, b) in PHASES.items()})
    out["cycle"] = df["cycle"] * 1e3
    out["proc"] = df["worker"].astype(str) + "." + df["stage"].astype(str)
    return out.groupby("proc").median()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    for d in map(Path, argv):
        scn = yaml.safe_load((d / "sim" / "scenario.yaml").read_text())
        warmup = int(scn.get("training", {}).get("warmup_steps", 0))
        runs = {"sim": phases(d / "sim", warmup)}
        for r in sorted(d.glob("real*")):
            if (r / "steps.csv").exists():
                runs[r.name] = phases(r, warmup)
        real = [v for k, v in runs.items() if k != "sim"]
        print(f"== {d.name} (median ms per worker process, steps >= {warmup})")
        table = pd.concat(runs, names=["run"]).round(2)
        print(table.to_string())
        if real:
            med = pd.concat(real).groupby(level=0).median()
            diff = ((runs["sim"] - med) / med * 100).round(1)
            print("-- sim vs the median real run, %")
            print(diff.to_string())
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
