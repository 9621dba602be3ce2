"""Digest of simulator results, to show that a refactor or a speed change leaves them byte for byte.

    python scripts/sim_digest.py [--profile NAME=PATH]... [--here] FILE... > digests.txt

Simulates each scenario (draw 0) and prints one line per scenario: the SHA-256 of its steps.csv,
trace.json and summary.json less the keys that are not results (wall time, the view, where costs
came from, the profile's path). `--profile NAME=PATH` simulates scenario NAME with that profile
file (`compute.profile: PATH`), in the view `--here` selects (default: the target cluster). Run it
before and after a change and `diff` the two outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from pssim.results import dumps_json
from pssim.scenario import load_scenario

# summary keys that say how a run was made rather than what it predicts
NOT_RESULTS = ("wall_time_s", "view", "compute_source", "profile", "host_model", "cost_sources")


def digest(folder: Path) -> str:
    summary = json.loads((folder / "summary.json").read_text())
    for k in NOT_RESULTS:
        summary.pop(k, None)
    h = hashlib.sha256()
    h.update((folder / "steps.csv").read_bytes())
    h.update((folder / "trace.json").read_bytes())
    h.update(dumps_json(summary).encode())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--profile", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument(
        "--here", action="store_true", help="simulate the run psreal makes on this host"
    )
    args = ap.parse_args(argv)
    profiles = dict(p.split("=", 1) for p in args.profile)
    from pssim.run import run_sim

    with tempfile.TemporaryDirectory() as out:
        for f in args.files:
            name = Path(f).stem
            sets = [f"compute.profile={profiles[name]}"] if name in profiles else []
            scn = load_scenario(f, sets)
            kw = {"view": "here"} if args.here else {}
            folder, summary = run_sim(scn, out, **kw)
            thr = summary["throughput_samples_per_s"]
            print(f"{name:32s} {digest(folder)} {thr:12.3f} {summary['events']:9d}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
