"""Every scenario shipped under scenarios/ is valid, and every example simulates.

The examples in scenarios/examples/ are the format's tour: together they use every feature of it
(checked below), each says what it shows in `description`, and each is small enough to simulate
in well under a second or two. Simulation here uses `compute.profile: none` so that the outcome
does not depend on a device profile cached on this machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pssim.records import summarize
from pssim.scenario import Scenario, load_scenario
from pssim.workload import build_workload

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted([*(ROOT / "scenarios").rglob("*.yaml"), *(ROOT / "scenarios").rglob("*.yml")])
EXAMPLES = sorted((ROOT / "scenarios" / "examples").glob("*.yaml"))
NO_PROFILE = ["compute.profile=none"]


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_there_are_scenarios_and_examples() -> None:
    assert (ROOT / "scenarios" / "quickstart.yaml") in SCENARIOS
    assert len(EXAMPLES) >= 10


def test_pssim_validate_accepts_every_scenario_in_one_call() -> None:
    exe = Path(sys.executable).with_name("pssim")
    cmd = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "import sys; from pssim.cli import main; sys.exit(main())"]
    )
    files = [_rel(p) for p in SCENARIOS]
    proc = subprocess.run(
        [*cmd, "validate", *files], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert [line.split(": ")[1] for line in proc.stdout.splitlines()] == files


@pytest.mark.parametrize("path", SCENARIOS, ids=_rel)
def test_scenario_loads(path: Path) -> None:
    scn = load_scenario(path)
    assert re.fullmatch(r"[a-z0-9_-]+", scn.name)


def test_scenario_names_are_unique() -> None:
    # the name is the output folder: two scenarios with one name would overwrite each other's
    # results
    names = [load_scenario(p).name for p in SCENARIOS]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_described_and_named_after_its_file(path: Path) -> None:
    scn = load_scenario(path)
    assert scn.name == path.stem
    assert len(scn.description.split()) >= 5, "an example says what it shows"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_simulates(path: Path) -> None:
    from pssim.sim import simulate

    scn = load_scenario(path, NO_PROFILE)
    rec, extra = simulate(scn)
    summary = summarize(scn, rec, extra)
    assert summary["scenario"] == scn.name and summary["backend"] == "sim"
    assert summary["throughput_samples_per_s"] > 0
    assert summary["workers"] == scn.cluster.workers.count


def _examples() -> list[Scenario]:
    return [load_scenario(p) for p in EXAMPLES]


def test_examples_cover_every_feature_of_the_format() -> None:
    ex = _examples()

    def some(pred: object) -> bool:
        return any(pred(s) for s in ex)  # type: ignore[operator]

    coverage = {
        "bsp": some(lambda s: s.sync.mode == "bsp"),
        "ssp": some(lambda s: s.sync.mode == "ssp"),
        "asp": some(lambda s: s.sync.mode == "asp"),
        **{
            f"sharding {p}": some(lambda s, p=p: s.sharding.policy == p)
            for p in ("range", "round_robin", "greedy_bytes")
        },
        **{
            f"wire {d}": some(lambda s, d=d: s.communication.wire_dtype == d)
            for d in ("float16", "bfloat16")
        },
        "topk": some(
            lambda s: (
                s.communication.compression.kind == "topk" and s.communication.compression.ratio < 1
            )
        ),
        "int8": some(lambda s: s.communication.compression.kind == "int8"),
        "overlap": some(lambda s: s.communication.overlap),
        "slowdown": some(lambda s: any(f > 1 for f in s.stragglers.slowdown.values())),
        **{
            f"jitter {d}": some(lambda s, d=d: s.stragglers.jitter.distribution == d)
            for d in ("lognormal", "exponential")
        },
        "shared devices": some(lambda s: s.cluster.workers.per_device > 1),
        "fabric": some(lambda s: s.cluster.network.fabric_gbps is not None),
        "linear": some(lambda s: s.model.kind == "linear"),
        "mlp": some(lambda s: s.model.kind == "mlp"),
        "transformer": some(lambda s: s.model.kind == "transformer"),
        **{
            f"pipeline {k}": some(lambda s, k=k: s.pipeline.stages > 1 and s.pipeline.schedule == k)
            for k in ("gpipe", "1f1b")
        },
        **{
            f"partition {k}": some(
                lambda s, k=k: s.pipeline.stages > 1 and s.pipeline.partition == k
            )
            for k in ("balanced", "uniform")
        },
        "microbatches": some(lambda s: s.pipeline.microbatches > 1),
        "cuda with a catalog gpu": some(
            lambda s: s.cluster.workers.device == "cuda" and s.cluster.workers.gpu is not None
        ),
        "crash with restart": some(lambda s: any(f.restart_after_s is not None for f in s.faults)),
        "adam": some(lambda s: s.training.optimizer.name == "adam"),
        "sgd momentum": some(
            lambda s: s.training.optimizer.name == "sgd" and s.training.optimizer.momentum > 0
        ),
        "fixed step time": some(lambda s: s.compute.step_time_s is not None),
        "roofline (no profile)": some(lambda s: s.compute.profile == "none"),
        "model dtype": some(lambda s: s.model.dtype != "float32"),
        "several shards": some(lambda s: s.cluster.servers.count > 1),
        **{
            f"emulation {e}": some(lambda s, e=e: s.cluster.network.emulation == e)
            for e in ("app", "kernel")
        },
    }
    missing = [k for k, v in coverage.items() if not v]
    assert not missing, f"no example uses: {missing}"


def test_canonical_small_case_is_among_the_examples() -> None:
    # DESIGN.md section 1: 10 workers x 1000 samples each, a 100k-parameter model, 1 PS
    def canonical(s: Scenario) -> bool:
        params = build_workload(s.model).numel
        return (
            s.cluster.workers.count == 10
            and s.training.samples_per_worker == 1000
            and s.cluster.servers.count == 1
            and s.model.kind in ("linear", "mlp")
            and 90_000 <= params <= 110_000
        )

    assert any(canonical(s) for s in _examples())
