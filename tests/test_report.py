"""Suite fidelity statistics (DESIGN.md section 8) on hand-made rows, and the suite report files.

- Spearman rho is the Pearson correlation of ranks, ties sharing their average rank (checked
  against hand computation: for x = 1,2,2,3 and y = 1,3,2,4 the ranks are 1,2.5,2.5,4 and
  1,3,2,4, so rho = 4.5 / sqrt(4.5 * 5) = 0.9487; without ties rho = 1 - 6 sum d^2 / (n (n^2 - 1)));
- median and max |relative error| per metric; mean staleness where real is 0 has no relative
  error and is left out, counted apart;
- best pick: the simulator's highest-throughput scenario against the measured best;
- suite.md / suite.json / suite.csv / parity.png are written from rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from pssim.compare import SUITE_COLUMNS, best_pick, failed_row, spearman, suite_stats, write_suite
from pssim.report import fmt_num, fmt_pct, md_table


def row(
    name: str,
    thr_sim: float,
    thr_real: float,
    st_sim: float = 0.0,
    st_real: float = 0.0,
    p50: float = 0.0,
    p95: float = 0.0,
    spread: float | None = None,
) -> dict[str, Any]:
    def err(s: float, r: float) -> float | None:
        return (s - r) / r if r else None

    return {
        "scenario": name,
        "status": "ok",
        "throughput_sim": thr_sim,
        "throughput_real": thr_real,
        "throughput_rel_error": err(thr_sim, thr_real),
        "step_time_p50_sim": 1 + p50,
        "step_time_p50_real": 1.0,
        "step_time_p50_rel_error": p50,
        "step_time_p95_sim": 1 + p95,
        "step_time_p95_real": 1.0,
        "step_time_p95_rel_error": p95,
        "staleness_mean_sim": st_sim,
        "staleness_mean_real": st_real,
        "staleness_mean_rel_error": err(st_sim, st_real),
        "real_runs": 3 if spread is not None else 1,
        "real_throughput_spread": spread,
        "compute_source": "profile:x",
        "report": f"{name}/report.md",
        "error": "",
    }


# ----------------------------------------------------------------------------------- spearman
def test_spearman_perfect_and_reversed_rankings() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 8, 27]) == pytest.approx(1.0)  # monotone, not linear: still 1


def test_spearman_without_ties_matches_the_classical_formula() -> None:
    # d = 0,1,1,1,1 -> 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman([10, 20, 30, 40, 50], [1, 3, 2, 5, 4]) == pytest.approx(0.8)


def test_spearman_gives_ties_their_average_rank() -> None:
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # ranks 1.5,1.5,3.5,3.5 vs 1,2,3,4: sum dx dy = 4, sum dx^2 = 4, sum dy^2 = 5
    assert spearman([1, 1, 2, 2], [3, 4, 5, 6]) == pytest.approx(4 / math.sqrt(4 * 5))


def test_spearman_matches_scipy_where_available() -> None:
    stats = pytest.importorskip("scipy.stats")
    x, y = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], [2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_spearman_is_undefined_for_one_point_or_all_tied() -> None:
    assert spearman([1.0], [2.0]) is None
    assert spearman([], []) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


# --------------------------------------------------------------------------------- the suite
def test_median_and_max_abs_error_per_metric() -> None:
    rows = [row("a", 110, 100, p50=-0.05), row("b", 80, 100, p50=0.01), row("c", 100, 100, p50=0.2)]
    s = suite_stats(rows)
    assert s["throughput"]["n"] == 3
    assert s["throughput"]["median_abs_rel_error"] == pytest.approx(0.1)
    assert s["throughput"]["max_abs_rel_error"] == pytest.approx(0.2)
    assert s["throughput"]["worst"] == "b"
    assert s["step_time_p50"]["median_abs_rel_error"] == pytest.approx(0.05)
    assert (
        s["step_time_p50"]["max_abs_rel_error"] == pytest.approx(0.2)
        and s["step_time_p50"]["worst"] == "c"
    )


def test_staleness_with_real_zero_is_left_out_and_counted() -> None:
    rows = [
        row("bsp", 1, 1, st_sim=0.0, st_real=0.0),
        row("asp", 1, 1, st_sim=1.2, st_real=0.0),
        row("ssp", 1, 1, st_sim=1.5, st_real=1.0),
        row("ssp2", 1, 1, st_sim=0.9, st_real=1.0),
    ]
    s = suite_stats(rows)["staleness_mean"]
    assert s["n"] == 2
    assert s["median_abs_rel_error"] == pytest.approx(0.3) and s[
        "max_abs_rel_error"
    ] == pytest.approx(0.5)
    assert s["both_zero"] == ["bsp"]
    assert s["real_zero"] == [{"scenario": "asp", "sim": 1.2}]


def test_failed_scenarios_are_left_out_of_the_statistics() -> None:
    rows = [
        row("a", 110, 100),
        failed_row("broken", "worker 1 (rank 2): crashed"),
        row("b", 200, 250),
    ]
    s = suite_stats(rows)
    assert s["scenarios"] == 3 and s["ok"] == 2 and s["failed"] == ["broken"]
    assert s["throughput"]["n"] == 2


def test_best_pick_and_rank_agreement() -> None:
    agree = suite_stats([row("a", 100, 90), row("b", 300, 250), row("c", 200, 180)])
    assert agree["spearman_rho_throughput"] == pytest.approx(1.0)
    assert agree["best_pick"] == {
        "sim_best": "b",
        "real_best": "b",
        "same": True,
        "real_of_sim_pick_over_real_best": 1.0,
    }

    wrong = suite_stats([row("a", 100, 90), row("b", 300, 200), row("c", 200, 250)])
    assert wrong["spearman_rho_throughput"] == pytest.approx(0.5)
    bp = wrong["best_pick"]
    assert bp["sim_best"] == "b" and bp["real_best"] == "c" and not bp["same"]
    assert bp["real_of_sim_pick_over_real_best"] == pytest.approx(200 / 250)


def test_best_pick_counts_a_tie_for_the_real_best_as_right() -> None:
    assert best_pick(["a", "b"], [2.0, 1.0], [5.0, 5.0])["same"] is True
    assert best_pick([], [], []) is None


def test_noise_floor_is_the_median_real_spread() -> None:
    s = suite_stats(
        [row("a", 1, 1, spread=0.02), row("b", 1, 1, spread=0.06), row("c", 1, 1, spread=0.04)]
    )
    assert s["noise_floor"] == {
        "n": 3,
        "median_rel_spread": pytest.approx(0.04),
        "max_rel_spread": pytest.approx(0.06),
    }
    assert suite_stats([row("a", 1, 1)])["noise_floor"] is None


def test_write_suite_files(tmp_path: Path) -> None:
    rows = [
        row("a", 110, 100, st_sim=0.5, st_real=0.4, spread=0.03),
        row("b", 2000, 2500),
        failed_row("broken", "worker 1 (rank 2): crashed"),
    ]
    md_path = write_suite(tmp_path, rows)
    assert md_path == tmp_path / "suite.md"
    doc = json.loads((tmp_path / "suite.json").read_text())
    assert doc["fidelity"]["throughput"]["n"] == 2
    assert doc["fidelity"]["failed"] == ["broken"]
    assert [r["scenario"] for r in doc["scenarios"]] == ["a", "b", "broken"]
    assert doc["host"]
    table = list(csv.DictReader(io.StringIO((tmp_path / "suite.csv").read_text())))
    assert [r["scenario"] for r in table] == ["a", "b", "broken"]
    assert tuple(table[0]) == SUITE_COLUMNS
    assert float(table[0]["throughput_rel_error"]) == pytest.approx(0.1)
    assert (tmp_path / "parity.png").read_bytes()[:4] == b"\x89PNG"
    md = md_path.read_text()
    assert "![parity](parity.png)" in md and "[a](a/report.md)" in md
    assert "Spearman rho" in md and "noise floor" in md and "crashed" in md
    assert "profile compute spread" not in md  # no row has a profile


def test_suite_shows_each_profile_compute_and_its_spread(tmp_path: Path) -> None:
    rows = [
        {
            **row("a", 110, 100),
            "profile_compute_s": 0.0035,
            "profile_compute_runs": 9,
            "profile_compute_spread": 0.3,
        },
        {**row("b", 12, 10), "profile_compute_s": 0.02, "profile_compute_runs": 0},
        row("c", 5, 5),
    ]
    md = write_suite(tmp_path, rows).read_text()
    assert "| 3.5 ms (30.0%) |" in md and "| 20 ms |" in md
    assert "profile compute spread" in md and "median 30.0%, max 30.0% over 1 scenarios" in md
    table = list(csv.DictReader(io.StringIO((tmp_path / "suite.csv").read_text())))
    assert table[0]["profile_compute_runs"] == "9" and table[2]["profile_compute_s"] == ""


def test_parity_plot_with_a_wide_range_is_drawn(tmp_path: Path) -> None:
    write_suite(tmp_path, [row("small", 12, 10), row("large", 90000, 100000)])
    assert (tmp_path / "parity.png").is_file()


def test_parity_plot_draws_the_run_ranges_and_short_ids(tmp_path: Path) -> None:
    from pssim.plots import _short_labels, parity_plot

    assert _short_labels(["v01-bsp-a", "v02-asp-b"]) == ["v01", "v02"]
    assert _short_labels(["quickstart", "tiny-ssp"]) == [
        "quickstart",
        "tiny-ssp",
    ]  # no ids: names kept
    assert _short_labels(["v01-a", "v01-b"]) == ["v01-a", "v01-b"]  # ids not distinct: names kept
    p = parity_plot(
        ["v01-a", "v02-b"],
        [100.0, 200.0],
        [110.0, 190.0],
        tmp_path / "p.png",
        [(90.0, 105.0), None],
        [(100.0, 120.0), (180.0, 195.0)],
    )
    assert p.read_bytes()[:4] == b"\x89PNG"
    r = {
        **row("a", 110, 100),
        "real_throughput_min": 95.0,
        "real_throughput_max": 104.0,
        "sim_throughput_min": 105.0,
        "sim_throughput_max": 111.0,
    }
    write_suite(tmp_path / "s", [r, row("b", 12, 10)])
    assert (tmp_path / "s" / "parity.png").is_file()
    assert "real_throughput_min" in (tmp_path / "s" / "suite.csv").read_text().splitlines()[0]


# ------------------------------------------------------------------------------- formatting
def test_number_and_table_formatting() -> None:
    assert fmt_pct(0.1234) == "+12.3%" and fmt_pct(-0.05) == "-5.0%" and fmt_pct(None) == "n/a"
    assert fmt_pct(0.5, signed=False) == "50.0%"
    assert (
        fmt_num(9558.2) == "9,558"
        and fmt_num(0.026783) == "0.02678"
        and fmt_num(None) == "n/a"
        and fmt_num(0) == "0"
    )
    t = md_table(["a", "b"], [["x|y", 1]])
    assert t.splitlines() == ["| a | b |", "| :-- | --: |", "| x\\|y | 1 |"]
