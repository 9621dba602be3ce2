"""Run one backend on a scenario and write its result files (shared by the CLIs, compare and sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import summarize
from .results import write_results

if TYPE_CHECKING:
    from .costs import CostModel
    from .scenario import Scenario


def run_sim(scn: Scenario, out: str | Path, costs: CostModel | None = None) -> tuple[Path, dict[str, Any]]:
    from .sim import simulate

    rec, extra = simulate(scn, costs)
    summary = summarize(scn, rec, extra)
    return write_results(out, scn, "sim", rec, summary), summary
