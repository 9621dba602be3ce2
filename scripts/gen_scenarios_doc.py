"""Write docs/scenarios.md's field reference from the pydantic schema (the single source of truth).

Run `python scripts/gen_scenarios_doc.py` after changing pssim/scenario/schema.py; a test checks
that the committed docs/scenarios.md lists every field.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pssim.scenario import Scenario  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED FIELD REFERENCE -->"
END = "<!-- END GENERATED FIELD REFERENCE -->"


def _type_name(t: Any) -> str:
    origin = get_origin(t)
    if origin is None:
        return getattr(t, "__name__", str(t)).replace("NoneType", "null")
    args = [a for a in get_args(t)]
    name = getattr(origin, "__name__", str(origin))
    if name == "Literal":
        return " \\| ".join(str(a) for a in args)
    if name in ("Union", "UnionType"):
        return " or ".join(_type_name(a) for a in args)
    if name == "Annotated":
        return _type_name(args[0])
    return f"{name}[{', '.join(_type_name(a) for a in args)}]"


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        try:
            v = field.default_factory()
        except TypeError:
            return "(section)"
        if isinstance(v, BaseModel):
            return "(section)"
        return f"`{v}`"
    v = field.default
    return "`null`" if v is None else f"`{v}`"


def rows(
    model: type[BaseModel], prefix: str = "", inst: BaseModel | None = None
) -> list[tuple[str, str, str, str]]:
    """(path, type, default, meaning) per field; `inst` is the section's default value, whose
    values win over the field defaults (e.g. the workers' NIC defaults differ from the servers')."""
    out = []
    for name, f in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = f.annotation
        sub = None
        for cand in (ann, *get_args(ann)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                sub = cand
        if sub is not None and get_origin(ann) is not list:
            doc = f.description or ((sub.__doc__ or "").strip().splitlines() or [""])[0]
            child = (
                getattr(inst, name)
                if inst is not None
                else (f.default_factory() if f.default_factory else None)
            )
            out.append((path, "section", "", doc))
            out += rows(sub, path + ".", child)
            continue
        if get_origin(ann) is list and sub is not None:
            out.append((path, f"list of {sub.__name__}", _default(f), f.description or ""))
            out += rows(sub, path + "[].")
            continue
        default = _default(f) if inst is None else f"`{getattr(inst, name)}`"
        if inst is not None and getattr(inst, name) is None:
            default = "`null`"
        out.append((path, _type_name(ann), default, f.description or ""))
    return out


def reference() -> str:
    lines = [BEGIN, "", "| field | type | default | meaning |", "|---|---|---|---|"]
    for path, typ, default, desc in rows(Scenario):
        if typ == "section":
            lines.append(f"| **`{path}`** | section | | {desc} |")
        else:
            lines.append(f"| `{path}` | {typ} | {default} | {desc.replace('|', '/')} |")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    doc = ROOT / "docs" / "scenarios.md"
    text = doc.read_text()
    a, b = text.index(BEGIN), text.index(END) + len(END)
    doc.write_text(text[:a] + reference() + text[b:])


if __name__ == "__main__":
    main()
