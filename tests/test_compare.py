"""`pssim compare`: how a comparison is computed and what it writes.

- every numeric summary metric is flattened to a dotted name and compared as
  rel_error = (sim - real) / real (DESIGN.md section 8), null when real is 0;
- with repeated real runs each metric carries the real backend's run-to-run spread;
- `compare_folders` turns any two result folders into comparison.json, plots and report.md
  (two simulator runs with different settings stand in for sim and real, so no real backend);
- bad options exit 2 before anything runs;
- one slow test runs `pssim compare` end to end with the real backend on two tiny scenarios.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pssim.cli import main
from pssim.compare import (
    BackendRun,
    compare_folders,
    compare_summaries,
    flatten_metrics,
    relative_error,
    run_spread,
)
from pssim.report import HEADLINE
from pssim.run import run_sim
from pssim.scenario import scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ("throughput.png", "step_time_cdf.png", "staleness.png", "timeline.png")

TINY = {
    "name": "tiny",
    "description": "two workers, one shard, fixed compute",
    "model": {"kind": "mlp", "input_dim": 32, "hidden": [32], "output_dim": 4},
    "training": {"batch_size": 8, "steps": 8, "warmup_steps": 2},
    "cluster": {"workers": {"count": 2}, "servers": {"count": 1}},
    "compute": {"step_time_s": 0.002},
    "sharding": {"partition_bytes": 2048},
}


def summary(**over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "backend": "sim",
        "scenario": "x",
        "sync_mode": "bsp",
        "workers": 4,
        "servers": 2,
        "pipeline_stages": 1,
        "microbatches": 1,
        "throughput_samples_per_s": 1000.0,
        "step_time_s": {"mean": 0.1, "p50": 0.1, "p95": 0.2, "p99": 0.3},
        "staleness": {"mean": 0.0, "max": 0, "histogram": {"0": 10}},
        "compute_time_s": {"mean": 0.05},
        "comm_time_s": {"mean": 0.04},
        "wait_time_s": {"mean": 0.01},
        "bytes_sent_total": 123,
        "utilization": {"device": 0.5, "server": 0.25},
        "bubble_fraction": 0.0,
        "peak_memory_bytes": {"worker": 10, "server": 20},
        "wall_time_s": 3.0,
        "compute_source": "step_time_s",
    }
    s.update(over)
    return s


# ------------------------------------------------------------------------------- flattening
def test_flatten_gives_dotted_numeric_metrics_only() -> None:
    f = flatten_metrics(summary(final_loss=2.3, arbiter_realtime=True, device="cpu", bad=None))
    assert f["throughput_samples_per_s"] == 1000.0
    assert f["step_time_s.p50"] == 0.1 and f["step_time_s.p99"] == 0.3
    assert f["staleness.mean"] == 0.0 and f["staleness.max"] == 0.0
    assert f["utilization.device"] == 0.5 and f["peak_memory_bytes.server"] == 20.0
    assert f["final_loss"] == 2.3
    # histograms, configuration echoes, run bookkeeping, booleans, strings and nulls are not metrics
    for name in (
        "staleness.histogram.0",
        "workers",
        "servers",
        "pipeline_stages",
        "microbatches",
        "wall_time_s",
        "arbiter_realtime",
        "device",
        "compute_source",
        "bad",
        "backend",
    ):
        assert name not in f
    assert all(isinstance(v, float) for v in f.values())


def test_relative_error_is_sim_minus_real_over_real() -> None:
    assert relative_error(110.0, 100.0) == pytest.approx(0.1)
    assert relative_error(90.0, 100.0) == pytest.approx(-0.1)
    assert relative_error(0.0, 0.0) is None  # 0/0: undefined, not 0
    assert relative_error(1.0, 0.0) is None
    assert relative_error(None, 1.0) is None and relative_error(1.0, None) is None
    assert relative_error(math.nan, 1.0) is None


def test_compare_summaries_compares_common_metrics() -> None:
    sim = summary(simulated_time_s=1.0, events=10)
    real = summary(
        backend="real",
        throughput_samples_per_s=800.0,
        step_time_s={"mean": 0.12, "p50": 0.125, "p95": 0.25, "p99": 0.4},
        final_loss=2.0,
        peak_memory_bytes={"worker": 5},
    )
    c = compare_summaries(sim, real)
    m = c["metrics"]
    assert m["throughput_samples_per_s"] == {
        "sim": 1000.0,
        "real": 800.0,
        "abs_error": 200.0,
        "rel_error": pytest.approx(0.25),
    }
    assert m["step_time_s.p50"]["rel_error"] == pytest.approx(-0.2)
    assert m["staleness.mean"]["rel_error"] is None  # real 0
    assert m["peak_memory_bytes.worker"]["rel_error"] == pytest.approx(1.0)
    assert "peak_memory_bytes.server" not in m
    assert c["only_sim"] == ["peak_memory_bytes.server"]
    assert c["only_real"] == ["final_loss"]
    assert all("real_spread" not in e for e in m.values())  # one real run: no spread


def test_repeated_real_runs_give_the_spread() -> None:
    runs = [summary(throughput_samples_per_s=t) for t in (90.0, 100.0, 110.0)]
    c = compare_summaries(summary(), runs[0], runs)
    sp = c["metrics"]["throughput_samples_per_s"]["real_spread"]
    assert (
        sp["runs"] == 3
        and sp["min"] == 90.0
        and sp["max"] == 110.0
        and sp["mean"] == pytest.approx(100.0)
    )
    assert sp["rel_spread"] == pytest.approx(0.2)
    assert c["metrics"]["throughput_samples_per_s"]["real"] == 100.0  # the median of the three runs
    assert run_spread([1.0]) is None
    assert run_spread([0.0, 0.0])["rel_spread"] is None


# -------------------------------------------------------------------------- result folders
def _two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a = scenario_from_dict(TINY)
    b = scenario_from_dict(
        {**TINY, "sync": {"mode": "ssp", "staleness": 1}, "stragglers": {"slowdown": {1: 2.0}}}
    )
    sim_dir, _ = run_sim(a, tmp_path / "a")
    real_dir, _ = run_sim(b, tmp_path / "b")
    return sim_dir, real_dir


def test_compare_folders_writes_comparison_plots_and_report(tmp_path: Path) -> None:
    sim_dir, real_dir = _two_runs(tmp_path)
    out = tmp_path / "cmp"
    c = compare_folders(sim_dir, real_dir, out, real_repeat_dirs=[real_dir])

    on_disk = json.loads((out / "comparison.json").read_text())
    assert on_disk["metrics"] == json.loads(json.dumps(c["metrics"]))
    assert on_disk["scenario"] == "tiny" and on_disk["real"]["runs"] == 2
    sim = json.loads((sim_dir / "summary.json").read_text())
    real = json.loads((real_dir / "summary.json").read_text())
    thr = on_disk["metrics"]["throughput_samples_per_s"]
    assert (
        thr["sim"] == sim["throughput_samples_per_s"]
        and thr["real"] == real["throughput_samples_per_s"]
    )
    assert thr["rel_error"] == pytest.approx((thr["sim"] - thr["real"]) / thr["real"])
    assert thr["real_spread"]["rel_spread"] == 0.0  # the same folder twice
    for e in on_disk["metrics"].values():
        assert e["rel_error"] is None or math.isfinite(e["rel_error"])

    for p in PLOTS:
        f = out / "plots" / p
        assert f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert md.startswith("# tiny")
    assert "two workers, one shard, fixed compute" in md
    for _, label, _, unit in HEADLINE:
        assert f"{label} ({unit})" in md
    for p in PLOTS:
        assert f"(plots/{p})" in md
    assert "compute.step_time_s" in md  # where the compute numbers came from
    assert on_disk["sim"]["profile_compute"] is None and "profile's compute" not in md  # no profile


def test_comparison_names_the_profile_compute_and_its_spread(tmp_path: Path) -> None:
    sim_dir, real_dir = _two_runs(tmp_path)
    prof = tmp_path / "p.json"
    runs = [{"compute_s": x} for x in (0.002, 0.0025, 0.0031)]
    prof.write_text(
        json.dumps(
            {
                "key": {},
                "host": "h",
                "device_name": "cpu",
                "cores": 2,
                "step_compute_s": 0.0025,
                "samples": {"in_situ": {"runs": runs}},
            }
        )
    )
    s = json.loads((sim_dir / "summary.json").read_text())
    (sim_dir / "summary.json").write_text(
        json.dumps({**s, "compute_source": f"profile:{prof}", "profile": str(prof)})
    )
    c = compare_folders(sim_dir, real_dir, tmp_path / "cmp", plots=False)
    assert c["sim"]["profile_compute"] == {
        "compute_s": 0.0025,
        "runs": 3,
        "min_s": 0.002,
        "max_s": 0.0031,
        "rel_spread": pytest.approx(0.44),
    }
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert (
        "the profile's compute per step: 2.5 ms; its 3 calibration runs measured from 2 to 3.1 ms"
        in md
    )
    prof.write_text("{not json")  # a profile that cannot be read any more: no figure, no failure
    assert (
        compare_folders(sim_dir, real_dir, tmp_path / "cmp2", plots=False)["sim"]["profile_compute"]
        is None
    )


def test_profile_self_check_simulates_the_calibration_scenario_against_its_runs(
    tmp_path: Path,
) -> None:
    # the profile's calibration runs measured 900, 1,000 and 1,300 samples/s (median 1,000); the
    # self-check simulates the scenario's calibration scenario (1 worker, 1 shard, BSP) with the
    # profile: the same as simulating that scenario, written out by hand, with the same costs
    from pssim.compare import profile_self_check
    from pssim.costs import build_costs
    from pssim.profile import CALIBRATION_STEPS, CALIBRATION_WARMUP
    from pssim.records import summarize
    from pssim.sim import simulate

    prof = tmp_path / "p.json"
    runs = [
        {"compute_s": 0.0025, "samples": {"throughput_samples_per_s": x}}
        for x in (900.0, 1300.0, 1000.0)
    ]
    prof.write_text(
        json.dumps(
            {
                "key": {},
                "host": "h",
                "device_name": "cpu",
                "cores": 2,
                "step_compute_s": 0.0025,
                "samples": {"in_situ": {"runs": runs}},
            }
        )
    )
    data = {
        **TINY,
        "cluster": {"workers": {"count": 3}, "servers": {"count": 2}},
        "sync": {"mode": "asp"},
        "stragglers": {"slowdown": {1: 3.0}},
    }
    got = profile_self_check(data, str(prof), draws=1)
    assert got is not None and got["runs"] == 3 and got["real"] == 1000.0
    by_hand = scenario_from_dict(
        {
            **TINY,
            "compute": {"profile": str(prof)},
            "cluster": {"workers": {"count": 1}, "servers": {"count": 1}},
            "training": {
                "batch_size": 8,
                "steps": CALIBRATION_STEPS,
                "warmup_steps": CALIBRATION_WARMUP,
            },
        }
    )
    sim = summarize(by_hand, *simulate(by_hand, build_costs(by_hand)))["throughput_samples_per_s"]
    assert got["sim"] == pytest.approx(sim, rel=1e-9)
    assert got["rel_error"] == pytest.approx((sim - 1000.0) / 1000.0)
    # no profile, or one that kept no run's throughput: no self-check
    assert profile_self_check(data, None) is None
    prof.write_text(
        json.dumps(
            {"key": {}, "host": "h", "device_name": "cpu", "cores": 2, "step_compute_s": 0.0025}
        )
    )
    assert profile_self_check(data, str(prof)) is None


def test_compare_folders_without_plots_writes_no_pngs(tmp_path: Path) -> None:
    sim_dir, real_dir = _two_runs(tmp_path)
    compare_folders(sim_dir, real_dir, tmp_path / "cmp", plots=False)
    assert (tmp_path / "cmp" / "comparison.json").is_file() and (
        tmp_path / "cmp" / "report.md"
    ).is_file()
    assert not (tmp_path / "cmp" / "plots").exists()


# --------------------------------------------------------------------------------- bad input
def test_bad_repeats_exits_2_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "compare",
            str(ROOT / "scenarios" / "quickstart.yaml"),
            "--repeats",
            "0",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "error: --repeats: must be >= 1 (got 0)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_two_scenarios_with_one_name_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = str(ROOT / "scenarios" / "quickstart.yaml")
    rc = main(["compare", q, q, "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "is also the name of" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_scenario_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "compare",
            str(ROOT / "scenarios" / "quickstart.yaml"),
            "--set",
            "training.steps=0",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "training.steps" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------- orchestration, no torch
def _fake_real(fail: set[str]):  # noqa: ANN202
    """A stand-in for `psreal run`: the simulator's result files under real/, or a failure."""
    import shutil

    from pssim.compare import BackendRun
    from pssim.scenario import load_scenario

    calls: list[str] = []

    def run_real(file: str, overrides: list[str], out: Path) -> BackendRun:
        scn = load_scenario(file, overrides)
        calls.append(scn.name)
        if scn.name in fail:
            return BackendRun(False, 1, ["error: worker 1 (rank 2): RuntimeError: boom"])
        tmp = Path(out) / ".fake"
        folder, _ = run_sim(scn.model_copy(update={"seed": scn.seed + len(calls)}), tmp)
        dest = Path(out) / scn.name / "real"
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(dest)
        shutil.rmtree(tmp)
        return BackendRun(True, 0, [])

    return run_real, calls


def test_a_failed_real_run_is_reported_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    import pssim.compare.runner as runner

    run_real, calls = _fake_real(fail={"broken"})
    monkeypatch.setattr(runner, "run_real", run_real)
    files = []
    for name in ("good", "broken", "other"):
        f = tmp_path / f"{name}.yaml"
        f.write_text(yaml.safe_dump({**TINY, "name": name}))
        files.append(str(f))
    out = tmp_path / "out"
    rc = main(["compare", *files, "--repeats", "3", "--out", str(out)])
    assert rc == 1
    # round by round: every scenario's first run, then a repeat of each per round; a failed
    # scenario is not repeated
    assert calls == ["good", "broken", "other", "good", "other", "good", "other"]
    captured = capsys.readouterr()
    assert "error: worker 1 (rank 2): RuntimeError: boom" in captured.err
    assert f"report: {out / 'suite.md'}" in captured.out

    good = json.loads((out / "good" / "comparison.json").read_text())
    assert good["real"]["runs"] == 3 and good["real"]["repeat_folders"] == [
        "real-repeat-1",
        "real-repeat-2",
    ]
    assert "real_spread" in good["metrics"]["throughput_samples_per_s"]
    assert not (out / "broken" / "comparison.json").exists()
    assert "boom" in (out / "broken" / "report.md").read_text()
    suite = json.loads((out / "suite.json").read_text())
    assert [(r["scenario"], r["status"]) for r in suite["scenarios"]] == [
        ("good", "ok"),
        ("broken", "failed"),
        ("other", "ok"),
    ]
    assert suite["fidelity"]["failed"] == ["broken"]


def test_later_rounds_add_calibration_runs_to_the_profiles_this_compare_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    import pssim.compare.runner as runner

    run_real, calls = _fake_real(fail=set())
    profiles: list[tuple[str, bool]] = []

    def run_profile(file: str, overrides: list[str], more: bool = False) -> BackendRun:
        profiles.append((Path(file).stem, more))
        return BackendRun(True, 0, [])

    monkeypatch.setattr(runner, "run_real", run_real)
    monkeypatch.setattr(runner, "run_profile", run_profile)
    cached: set[int] = (
        set()
    )  # models profiled so far: the second scenario of a model finds its profile

    def needs_profile(scn: Any, reprofile: bool = False) -> bool:
        if scn.model.hidden[0] in cached:
            return False
        cached.add(scn.model.hidden[0])
        return True

    monkeypatch.setattr(runner, "needs_profile", needs_profile)
    files = []
    for name, hidden in (("a", 32), ("b", 32), ("c", 16)):  # a and b share a profile, c has its own
        f = tmp_path / f"{name}.yaml"
        f.write_text(
            yaml.safe_dump({**TINY, "name": name, "model": {**TINY["model"], "hidden": [hidden]}})
        )
        files.append(str(f))
    assert main(["compare", *files, "--repeats", "3", "--out", str(tmp_path / "out")]) == 0
    assert profiles == [
        ("a", False),
        ("c", False),
        ("a", True),
        ("c", True),
        ("a", True),
        ("c", True),
    ]
    assert calls == ["a", "b", "c"] * 3


def test_reuse_real_runs_only_the_simulator_against_the_kept_real_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    import pssim.compare.runner as runner

    run_real, calls = _fake_real(fail=set())
    monkeypatch.setattr(runner, "run_real", run_real)
    f = tmp_path / "good.yaml"
    f.write_text(yaml.safe_dump({**TINY, "name": "good"}))
    out = tmp_path / "out"
    assert main(["compare", str(f), "--repeats", "2", "--out", str(out)]) == 0
    first = json.loads((out / "good" / "comparison.json").read_text())
    (out / "good" / "comparison.json").unlink()

    assert main(["compare", str(f), "--reuse-real", "--out", str(out)]) == 0
    assert calls == ["good", "good"]  # psreal was not run again
    again = json.loads((out / "good" / "comparison.json").read_text())
    assert again["real"]["runs"] == 2  # the first run and its repeat, both kept
    assert (
        again["metrics"]["throughput_samples_per_s"] == first["metrics"]["throughput_samples_per_s"]
    )
    assert any("reused" in n for n in again["notes"])

    capsys.readouterr()
    assert main(["compare", str(f), "--reuse-real", "--out", str(tmp_path / "empty")]) == 1
    assert "--reuse-real: no real run in" in capsys.readouterr().err


# ------------------------------------------------------------------------------ end to end
SECOND = """\
name: tiny-ssp
description: two workers under SSP(1), one slower, one shard
model: {kind: mlp, input_dim: 64, hidden: [64], output_dim: 4}
training: {batch_size: 16, steps: 8, warmup_steps: 2}
cluster:
  workers: {count: 2, device: cpu, nic: {bandwidth_gbps: 1.0, latency_us: 100}}
  servers: {count: 1, nic: {bandwidth_gbps: 1.0, latency_us: 100}}
sync: {mode: ssp, staleness: 1}
stragglers: {slowdown: {1: 1.5}}
sharding: {partition_bytes: 8192}
"""


@pytest.mark.slow
def test_compare_end_to_end_with_the_real_backend(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    second = tmp_path / "tiny-ssp.yaml"
    second.write_text(SECOND)
    out, rep = tmp_path / "results", tmp_path / "report"
    env = {**os.environ, "PSSIM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pssim.cli import main; sys.exit(main())",
            "compare",
            str(ROOT / "scenarios" / "quickstart.yaml"),
            str(second),
            "--set",
            "training.steps=8",
            "--set",
            "training.warmup_steps=2",
            "--repeats",
            "2",
            "--out",
            str(out),
            "--report-dir",
            str(rep),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"report: {rep / 'suite.md'}" in proc.stdout
    profiles = [
        json.loads(f.read_text())
        for f in (tmp_path / "cache" / "profiles").glob("*.json")
        if not f.name.startswith("host-")
    ]
    assert profiles  # profiled into the given cache
    for (
        prof
    ) in profiles:  # 3 calibration runs in round 1, 3 more (psreal profile --more) in round 2
        assert len(prof["samples"]["in_situ"]["runs"]) == 6
    for name in ("quickstart", "tiny-ssp"):
        d = out / name
        for f in (
            "comparison.json",
            "report.md",
            *(f"plots/{p}" for p in PLOTS),
            "sim/summary.json",
            "sim/steps.csv",
            "real/summary.json",
            "real/steps.csv",
            "real-repeat-1/summary.json",
        ):
            assert (d / f).is_file(), f"{name}/{f} missing"
        c = json.loads((d / "comparison.json").read_text())
        assert c["real"]["runs"] == 2
        assert c["sim"]["compute_source"]  # provenance recorded
        for metric in (
            "throughput_samples_per_s",
            "step_time_s.p50",
            "step_time_s.p95",
            "staleness.mean",
        ):
            assert metric in c["metrics"]
        for metric, e in c["metrics"].items():
            assert e["rel_error"] is None or math.isfinite(e["rel_error"]), metric
            if e["real"] != 0:
                assert e["rel_error"] is not None, metric
        assert "real_spread" in c["metrics"]["throughput_samples_per_s"]
    for f in ("suite.md", "suite.json", "suite.csv", "parity.png"):
        assert (rep / f).is_file()
    suite = json.loads((rep / "suite.json").read_text())
    assert suite["fidelity"]["throughput"]["n"] == 2
    assert suite["fidelity"]["noise_floor"]["n"] == 2
    assert [r["scenario"] for r in suite["scenarios"]] == ["quickstart", "tiny-ssp"]
