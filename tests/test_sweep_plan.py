"""`pssim sweep` and `pssim plan` as a user runs them, on tiny scenarios with the simulator only.

- a grid is `field=v1,v2` (commas inside brackets do not split); the variants are the cartesian
  product, each named `<name>-<field>-<value>...` within the scenario-name rules;
- a bad grid value exits 2 naming the field, before anything runs or is written;
- plan simulates every catalog GPU x workers x shards, prices it, picks the cheapest
  configuration that meets the target, and says whether the simulator's error was measured;
- a bad catalog exits 2 with one line per problem.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from pssim.cli import main
from pssim.plan import choose, measured_error
from pssim.scenario import ScenarioError
from pssim.sweep import field_labels, make_variants, parse_grid, sanitize, split_values

TINY = """\
name: tiny
description: two workers, one shard, small MLP
model: {kind: mlp, input_dim: 32, hidden: [32], output_dim: 4}
training: {batch_size: 8, steps: 5, warmup_steps: 1}
cluster: {workers: {count: 2}, servers: {count: 1}}
compute: {step_time_s: 0.002}
sharding: {partition_bytes: 1024}
"""

CATALOG = """\
cpu:
  kind: cpu
  peak_tflops: {float32: 0.1, bfloat16: 0.1, float16: 0.05}
  memory_gb: 8
  mem_bw_gbs: 10
  price_per_hour_usd: 0.05
  source: test
budget-gpu:
  kind: gpu
  peak_tflops: {float32: 1, bfloat16: 1, float16: 1}
  memory_gb: 16
  mem_bw_gbs: 100
  price_per_hour_usd: 0.5
  source: test
big-gpu:
  kind: gpu
  peak_tflops: {float32: 100, bfloat16: 100, float16: 100}
  memory_gb: 80
  mem_bw_gbs: 3000
  price_per_hour_usd: 5
  source: test
"""
NAME = re.compile(r"^[a-z0-9_-]+$")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


# ------------------------------------------------------------------------------------ grids
def test_values_split_at_top_level_commas_only() -> None:
    assert split_values("1,2,4") == ["1", "2", "4"]
    assert split_values("[256, 256],[512]") == ["[256, 256]", "[512]"]
    assert split_values("{kind: topk, ratio: 0.1}, {kind: none}") == [
        "{kind: topk, ratio: 0.1}",
        "{kind: none}",
    ]
    assert split_values("'a,b',c") == ["'a,b'", "c"]


def test_parse_grid() -> None:
    assert parse_grid(["cluster.workers.count=1,2", "sync.mode=bsp"]) == [
        ("cluster.workers.count", ["1", "2"]),
        ("sync.mode", ["bsp"]),
    ]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("cluster.workers.count", "expected field.path=v1,v2"),
        ("a..b=1", "empty field name"),
        ("=1,2", "empty field name"),
        ("x=1,,2", "empty value"),
        ("x=1,1", "listed twice"),
        ("name=a,b", "cannot be swept"),
    ],
)
def test_malformed_grids_are_refused(item: str, message: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_grid([item])
    assert message in str(exc.value)


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(ScenarioError, match="given in two --grid options"):
        parse_grid(["x=1", "x=2"])


def test_variant_names() -> None:
    assert field_labels(["cluster.workers.count", "cluster.servers.count", "sync.mode"]) == {
        "cluster.workers.count": "workers_count",
        "cluster.servers.count": "servers_count",
        "sync.mode": "mode",
    }
    assert (
        sanitize("[256, 256]") == "256_256"
        and sanitize("0.5") == "0_5"
        and sanitize("1e-3") == "1e-3"
    )
    vs = make_variants(
        "q", [("cluster.workers.count", ["1", "2"]), ("model.hidden", ["[64]", "[64,64]"])]
    )
    assert [v.name for v in vs] == [
        "q-count-1-hidden-64",
        "q-count-1-hidden-64_64",
        "q-count-2-hidden-64",
        "q-count-2-hidden-64_64",
    ]
    assert vs[1].values == (("cluster.workers.count", "1"), ("model.hidden", "[64,64]"))
    # values that sanitise alike still get distinct names; long names stay within the limit
    same = make_variants("q", [("x", ["[1,2]", "[1, 2]"])])
    assert len({v.name for v in same}) == 2
    long = make_variants("q" * 90, [("training.optimizer.lr", ["0.000001", "0.000002"])])
    assert (
        all(len(v.name) <= 100 and NAME.match(v.name) for v in long)
        and len({v.name for v in long}) == 2
    )


# ------------------------------------------------------------------------------------ sweep
def test_bad_grid_value_exits_2_naming_the_field_and_runs_nothing(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "sweep",
            str(tiny),
            "--grid",
            "cluster.workers.count=2,0",
            "--grid",
            "sync.mode=bsp,fast",
            "--out",
            str(out),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.splitlines()
    assert f"error: {tiny}: cluster.workers.count: must be > 0 (got 0) (from --grid)" in err
    assert any(ln.startswith(f"error: {tiny}: sync.mode: ") and "'fast'" in ln for ln in err)
    assert len(err) == 2  # each problem once, though it appears in several variants
    assert not out.exists()


def test_malformed_grid_exits_2(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["sweep", str(tiny), "--grid", "cluster.workers.count", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "error: --grid: expected field.path=v1,v2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_sweep_runs_every_variant_in_parallel(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "sweep",
            str(tiny),
            "--grid",
            "cluster.workers.count=1,2",
            "--grid",
            "sync.mode=bsp,asp",
            "--jobs",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    folder = out / "tiny-sweep"
    rows = list(csv.DictReader((folder / "sweep.csv").open()))
    assert [(r["cluster.workers.count"], r["sync.mode"]) for r in rows] == [
        ("1", "bsp"),
        ("1", "asp"),
        ("2", "bsp"),
        ("2", "asp"),
    ]
    for r in rows:
        assert r["status"] == "ok" and float(r["sim_throughput_samples_per_s"]) > 0
        summary = json.loads((folder / r["variant"] / "sim" / "summary.json").read_text())
        assert summary["scenario"] == r["variant"] and summary["workers"] == int(
            r["cluster.workers.count"]
        )
        assert summary["sync_mode"] == r["sync.mode"]
    md = (folder / "sweep.md").read_text()
    printed = capsys.readouterr().out
    for r in rows:
        assert r["variant"] in md and r["variant"] in printed
    assert f"sweep: {folder / 'sweep.md'}" in printed


def test_sweep_rejects_jobs_below_one(tiny: Path, tmp_path: Path) -> None:
    assert (
        main(
            [
                "sweep",
                str(tiny),
                "--grid",
                "cluster.workers.count=1",
                "--jobs",
                "0",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )


# ------------------------------------------------------------------------------------- plan
def test_plan_on_a_two_gpu_catalog(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG)
    out = tmp_path / "out"
    rc = main(
        [
            "plan",
            str(tiny),
            "--catalog",
            str(cat),
            "--workers",
            "1,2",
            "--servers",
            "1,2",
            "--target-samples-per-s",
            "100",
            "--budget-per-hour",
            "50",
            "--jobs",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader((out / "tiny-plan" / "plan.csv").open()))
    assert {(r["gpu"], r["workers"], r["servers"]) for r in rows} == {
        (g, w, s) for g in ("budget-gpu", "big-gpu") for w in "12" for s in "12"
    }
    for r in rows:
        assert r["status"] == "ok" and float(r["throughput_samples_per_s"]) > 0
        gpu_price = 0.5 if r["gpu"] == "budget-gpu" else 5.0
        cost = int(r["devices"]) * gpu_price + int(r["servers"]) * 4 * 0.05
        assert float(r["cost_per_hour_usd"]) == pytest.approx(cost)
        assert float(r["samples_per_usd"]) == pytest.approx(
            float(r["throughput_samples_per_s"]) * 3600 / cost
        )
        assert r["meets_target"] == str(float(r["throughput_samples_per_s"]) >= 100)
    # the faster GPU is at least as fast in every configuration (compute is all that differs)
    thr = {
        (r["gpu"], r["workers"], r["servers"]): float(r["throughput_samples_per_s"]) for r in rows
    }
    for (g, w, s), t in thr.items():
        if g == "big-gpu":
            assert t >= thr[("budget-gpu", w, s)] * 0.999
    printed = capsys.readouterr().out
    meeting = [r for r in rows if r["meets_target"] == "True" and r["within_budget"] == "True"]
    cheapest = min(
        meeting,
        key=lambda r: (float(r["cost_per_hour_usd"]), -float(r["throughput_samples_per_s"])),
    )
    assert f"recommended: {cheapest['workers']} x {cheapest['gpu']}" in printed
    assert "simulator error" in printed
    md = (out / "tiny-plan" / "plan.md").read_text()
    assert (
        "## Recommendation" in md
        and "## Assumptions" in md
        and "budget-gpu" in md
        and "big-gpu" in md
    )


def test_choose_prefers_the_cheapest_that_meets_the_target() -> None:
    def r(thr: float, cost: float) -> dict:
        return {
            "status": "ok",
            "throughput_samples_per_s": thr,
            "cost_per_hour_usd": cost,
            "samples_per_usd": thr * 3600 / cost,
        }

    rows = [r(100, 1.0), r(500, 4.0), r(600, 3.0), r(1000, 10.0)]
    assert choose(rows, 450, None)[0] is rows[2]
    assert choose(rows, 450, 2.0)[0] is rows[0]  # nothing meets both: the fastest within budget
    assert "no configuration reaches" in choose(rows, 450, 2.0)[1]
    assert choose(rows, None, 5.0)[0] is rows[2]
    assert choose(rows, None, None)[0] is rows[2]  # most samples per dollar
    assert choose(rows, 100, 0.5)[0] is None
    assert choose([{**rows[0], "status": "does not fit"}], None, None)[0] is None


def test_measured_error_reads_the_validation_suite(tmp_path: Path) -> None:
    assert "has not been measured" in measured_error(tmp_path / "missing.json")
    suite = tmp_path / "suite.json"
    suite.write_text(
        json.dumps(
            {
                "host": "elsewhere|cpu|2",
                "fidelity": {
                    "throughput": {"n": 3, "median_abs_rel_error": 0.1, "max_abs_rel_error": 0.2}
                },
            }
        )
    )
    line = measured_error(suite)
    assert (
        "median 10.0%, max 20.0%" in line
        and "over 3 scenarios" in line
        and "another host (elsewhere)" in line
    )


def test_bad_catalog_exits_2_with_one_line_per_problem(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cat = tmp_path / "bad.yaml"
    cat.write_text(
        CATALOG.replace("price_per_hour_usd: 0.5", "price_per_hour_usd: -1").replace(
            "memory_gb: 80", "memory_gb: lots"
        )
    )
    out = tmp_path / "out"
    assert main(["plan", str(tiny), "--catalog", str(cat), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any(ln.startswith(f"error: {cat}: budget-gpu.price_per_hour_usd") for ln in err)
    assert any(ln.startswith(f"error: {cat}: big-gpu.memory_gb") for ln in err)
    assert not out.exists()


def test_catalog_without_gpus_exits_2(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cat = tmp_path / "cpu-only.yaml"
    cat.write_text(CATALOG.split("budget-gpu:")[0])
    assert main(["plan", str(tiny), "--catalog", str(cat), "--out", str(tmp_path / "o")]) == 2
    assert "no entry of kind gpu" in capsys.readouterr().err


@pytest.mark.parametrize(
    "opt",
    [
        ["--target-samples-per-s", "0"],
        ["--budget-per-hour", "-3"],
        ["--workers", "0,2"],
        ["--servers", "a"],
    ],
)
def test_bad_plan_options_exit_2(tiny: Path, tmp_path: Path, opt: list[str]) -> None:
    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG)
    assert main(["plan", str(tiny), "--catalog", str(cat), *opt, "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
