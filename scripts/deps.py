"""The import graph of pssim and psreal: its cycles, its forbidden arrows, and a picture.

    python scripts/deps.py            # check; print cycles and forbidden arrows (exit 1 if any)
    python scripts/deps.py --write    # also write docs/dependencies.md (a mermaid diagram)

Every import that runs counts, a lazy one inside a function as much as one at the top of a
module; imports for type checking only do not (grimp builds the graph). The rules (DESIGN.md
section 2 and the redesign): no cycle between modules; psreal never imports the simulator
(`pssim.sim`); pssim never imports psreal. The picture groups modules by package (`pssim.sim`,
`pssim.compare`, ...) and draws an arrow per package pair.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import grimp

PACKAGES = ("pssim", "psreal")
FORBIDDEN = (("psreal", "pssim.sim"), ("pssim", "psreal"))
DOC = Path(__file__).resolve().parents[1] / "docs" / "dependencies.md"


class Graph(NamedTuple):
    modules: list[str]
    imports: dict[str, set[str]]  # module -> the modules of these packages it imports


def build() -> Graph:
    g = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    modules = sorted(g.modules)
    return Graph(modules, {m: set(g.find_modules_directly_imported_by(m)) for m in modules})


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.imports[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for m in graph.modules:
        if m not in index:
            visit(m)
    return sorted(found)


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden(graph: Graph) -> list[tuple[str, str]]:
    """(importer, imported) pairs that break a FORBIDDEN rule."""
    return [
        (m, d)
        for m in graph.modules
        for d in sorted(graph.imports[m])
        for src, dst in FORBIDDEN
        if _under(m, src) and _under(d, dst) and not (src == "pssim" and _under(m, "psreal"))
    ]


def group(module: str) -> str:
    """The box a module is drawn in: its subpackage (pssim.sim, pssim.compare), else itself."""
    parts = module.split(".")
    if len(parts) >= 3 or (len(parts) == 2 and _is_package(module)):
        return ".".join(parts[:2])
    return module


def _is_package(module: str) -> bool:
    root = Path(__file__).resolve().parents[1]
    return (root / module.replace(".", "/") / "__init__.py").exists()


def mermaid(graph: Graph) -> str:
    boxes = sorted({group(m) for m in graph.modules if m not in PACKAGES})
    arrows = sorted(
        {
            (group(m), group(d))
            for m in graph.modules
            for d in graph.imports[m]
            if group(m) != group(d) and m not in PACKAGES and d not in PACKAGES
        }
    )
    ids = {b: b.replace(".", "_") for b in boxes}
    lines = ["flowchart LR"]
    for pkg in PACKAGES:
        lines.append(f"  subgraph {pkg}")
        lines += [f"    {ids[b]}[{b}]" for b in boxes if _under(b, pkg)]
        lines.append("  end")
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in arrows]
    return "\n".join(lines)


def write(graph: Graph) -> None:
    DOC.write_text(
        "# Dependencies\n\n"
        "The import graph of pssim and psreal, drawn by `scripts/deps.py --write` from the\n"
        "code (every import that runs, lazy ones inside functions too), one box per module or\n"
        "subpackage.\n"
        "The rules, checked by `tests/test_dependencies.py`: no import cycle between modules,\n"
        "no arrow from psreal into the simulator (`pssim.sim`), none from pssim into psreal\n"
        "(`pssim compare` runs psreal as a subprocess). psreal and the simulator share what a\n"
        "scenario fixes of a run through `pssim.runplan` and the shard protocol through\n"
        "`pssim.protocol`.\n\n"
        "```mermaid\n" + mermaid(graph) + "\n```\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write {DOC.name}")
    args = ap.parse_args(argv)
    graph = build()
    bad = False
    for c in cycles(graph):
        print("cycle: " + " <-> ".join(c))
        bad = True
    for m, d in forbidden(graph):
        print(f"forbidden: {m} imports {d}")
        bad = True
    if args.write:
        write(graph)
        print(f"wrote {DOC}")
    if not bad:
        print(f"{len(graph.modules)} modules: no cycle, no forbidden import")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
