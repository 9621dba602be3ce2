"""Repeated simulator runs: they differ only in the compute's natural variation; the median one is
written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pssim.cli import main
from pssim.compare import within_noise
from pssim.costs import build_costs
from pssim.draws import compute_factors, natural_factors
from pssim.records import summarize
from pssim.run import run_sim
from pssim.scenario import Scenario, scenario_from_dict
from pssim.sim import simulate

SAMPLES = (0.002, 0.003, 0.004, 0.0025, 0.0035)


def _dict(**over: object) -> dict:
    return {
        "name": "reps",
        "model": {"kind": "mlp", "input_dim": 32, "hidden": [32], "output_dim": 4},
        "training": {"batch_size": 8, "steps": 12, "warmup_steps": 2},
        "cluster": {"workers": {"count": 4}, "servers": {"count": 2}},
        "sync": {"mode": "ssp", "staleness": 1},
        "compute": {"step_time_s": 0.003},
        "sharding": {"partition_bytes": 1024},
        "stragglers": {"slowdown": {1: 1.5}},
        **over,
    }


def _scn(**over: object) -> Scenario:
    return scenario_from_dict(_dict(**over))


def _costs(scn: Scenario):  # noqa: ANN202
    """The scenario's costs with measured-looking compute samples (what a profile gives)."""
    return dataclasses.replace(build_costs(scn), compute_samples_s=SAMPLES)


def test_draw_zero_is_the_plain_stream_and_other_draws_are_new() -> None:
    scn = _scn()
    plain = natural_factors(scn, list(SAMPLES))
    assert np.array_equal(natural_factors(scn, list(SAMPLES), 0), plain)
    one, two = natural_factors(scn, list(SAMPLES), 1), natural_factors(scn, list(SAMPLES), 2)
    assert not np.array_equal(one, plain) and not np.array_equal(one, two)
    assert np.array_equal(natural_factors(scn, list(SAMPLES), 1), one)  # seeded
    # every draw picks from the same measured samples (relative to their mean)
    rel = set(np.round(np.array(SAMPLES) / np.mean(SAMPLES), 12))
    assert set(np.round(one.ravel(), 12)) <= rel
    # the straggler and jitter draws, which the real backend shares, are the same in every run
    assert compute_factors(scn)[1, 0, 0] == 1.5


def test_the_median_run_is_written_with_every_run_throughput(tmp_path: Path) -> None:
    scn = _scn()
    costs = _costs(scn)
    folder, summary = run_sim(scn, tmp_path / "a", costs, runs=5)
    reps = summary["sim_runs"]
    assert reps["n"] == 5 and len(reps["throughput_samples_per_s"]) == 5
    thr = reps["throughput_samples_per_s"]
    assert len(set(thr)) > 1  # the runs differ
    assert summary["throughput_samples_per_s"] == sorted(thr)[2] == reps["throughput_median"]
    assert reps["throughput_min"] == min(thr) and reps["throughput_max"] == max(thr)
    # the files written are the median run's own
    rec, extra = simulate(scn, costs, draw=reps["median_run"])
    assert (
        summarize(scn, rec, extra)["throughput_samples_per_s"]
        == summary["throughput_samples_per_s"]
    )
    assert json.loads((folder / "summary.json").read_text())["sim_runs"]["n"] == 5
    # deterministic: the same scenario gives byte-identical files
    again, _ = run_sim(scn, tmp_path / "c", costs, runs=5)
    for name in ("steps.csv", "summary.json", "trace.json"):
        a, b = (folder / name).read_text(), (again / name).read_text()
        if name == "summary.json":  # the simulator's own wall time differs run to run
            a, b = (json.loads(x) for x in (a, b))
            for d in (a, b):
                d.pop("wall_time_s")
        assert a == b, name


def test_without_compute_samples_there_is_one_run(tmp_path: Path) -> None:
    _, summary = run_sim(_scn(), tmp_path, runs=4)  # a fixed step time: nothing to vary
    assert summary["sim_runs"]["n"] == 1 and summary["sim_runs"]["asked"] == 4


def test_runs_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="runs"):
        run_sim(_scn(), tmp_path, runs=0)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(_dict()))
    assert main(["simulate", str(f), "--runs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--runs" in capsys.readouterr().err
    assert main(["compare", str(f), "--sim-runs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--sim-runs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_within_noise_is_overlap_of_the_two_ranges() -> None:
    reps = {"throughput_min": 90.0, "throughput_max": 110.0}
    spread = {"min": 105.0, "max": 120.0}
    assert (
        within_noise({"sim_runs": reps}, {"sim": 100.0, "real": 112.0, "real_spread": spread})
        is True
    )
    assert (
        within_noise(
            {"sim_runs": reps},
            {"sim": 100.0, "real": 130.0, "real_spread": {"min": 125.0, "max": 140.0}},
        )
        is False
    )
    assert (
        within_noise({}, {"sim": 100.0, "real": 112.0, "real_spread": spread}) is False
    )  # one sim value outside
    assert within_noise({}, {"sim": 110.0, "real": 112.0, "real_spread": spread}) is True
    assert within_noise({}, {"sim": 100.0, "real": 112.0}) is None  # no range on either side
