"""`--set a.b=value` overrides: parsing them and applying them to a scenario's data by path."""

from __future__ import annotations

from typing import Any, get_origin

import yaml

from .errors import Problem, ScenarioError, _fmt_input, _type_at
from .schema import Scenario
from .yaml_io import _UniqueKeyLoader


class _OverrideProblem(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def parse_overrides(items: list[str] | None) -> list[tuple[list[Any], Any]]:
    """`a.b=value` strings -> (path, value). Values are read as YAML ("0.5", "1e-3", "[1, 2]",
    "null").

    Raises ScenarioError (file '--set') listing every malformed item.
    """
    out = []
    problems: list[Problem] = []
    for item in items or []:
        if "=" not in item:
            problems.append(Problem("", f"expected field.path=value (got {item!r})"))
            continue
        key, _, raw = item.partition("=")
        path: list[Any] = []
        segs = key.strip().split(".")
        if not all(seg.strip() for seg in segs):
            problems.append(
                Problem(
                    "", f"empty field name in {key!r} (expected field.path=value, got {item!r})"
                )
            )
            continue
        for seg in segs:
            seg = seg.strip()
            path.append(int(seg) if seg.isdigit() else seg)
        try:
            value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""  # noqa: S506
        except yaml.YAMLError:
            value = raw  # not YAML: keep the text, the schema says whether a string fits
        out.append((path, value))
    if problems:
        raise ScenarioError("--set", problems)
    return out


def _apply_override(data: dict[str, Any], path: list[Any], value: Any) -> None:
    node: Any = data
    for i, seg in enumerate(path):
        here = ".".join(map(str, path[: i + 1]))
        last = i == len(path) - 1
        if isinstance(node, list):
            if not isinstance(seg, int):
                raise _OverrideProblem(
                    here,
                    f"{'.'.join(map(str, path[:i]))} is a list; index it by number (got {seg!r})",
                )
            if seg >= len(node):
                raise _OverrideProblem(
                    here, f"index out of range (the list has {len(node)} entries)"
                )
        elif isinstance(node, dict):
            if not last and node.get(seg) is None:
                if get_origin(_type_at(path[: i + 1], Scenario)) is list:
                    raise _OverrideProblem(
                        ".".join(map(str, path[: i + 2])),
                        f"index out of range ({here} has no entries)",
                    )
                node[seg] = {}
        else:
            parent = ".".join(map(str, path[:i]))
            raise _OverrideProblem(
                here, f"cannot be set: {parent} is not a mapping (got {_fmt_input(node)})"
            )
        if last:
            node[seg] = value
        else:
            node = node[seg]


def _is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")
