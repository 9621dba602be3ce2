"""The import graph (scripts/deps.py): no cycle between modules, psreal never imports the
simulator, pssim never imports psreal; docs/dependencies.md is the picture of the code as it is."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "deps.py"


def _deps():  # noqa: ANN202 - the scripts/deps.py module
    spec = importlib.util.spec_from_file_location("deps", SCRIPT)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["deps"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_the_import_graph_has_no_cycle_and_no_forbidden_arrow() -> None:
    deps = _deps()
    graph = deps.build()
    assert "pssim.sim.host" in graph.modules and "psreal.server" in graph.modules
    assert deps.cycles(graph) == []
    assert deps.forbidden(graph) == []


def test_the_checks_find_a_cycle_and_a_forbidden_arrow() -> None:
    deps = _deps()
    graph = deps.Graph(
        ["psreal.a", "pssim.b", "pssim.sim.c"],
        {"psreal.a": {"pssim.sim.c"}, "pssim.b": {"pssim.sim.c"}, "pssim.sim.c": {"pssim.b"}},
    )
    assert deps.cycles(graph) == [["pssim.b", "pssim.sim.c"]]
    assert deps.forbidden(graph) == [("psreal.a", "pssim.sim.c")]


def test_the_committed_picture_is_the_code_as_it_is() -> None:
    deps = _deps()
    assert deps.mermaid(deps.build()) in deps.DOC.read_text()
