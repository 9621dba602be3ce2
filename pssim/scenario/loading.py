"""From YAML to a validated `Scenario` and back: loading, resolving, the JSON Schema.

Nothing here creates folders or writes files.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .checks import _cross_problems_of_valid_sections
from .errors import Problem, ScenarioError, _FieldProblem, _MultiProblem, _problems_from, _unique
from .overrides import _apply_override, _is_under, _OverrideProblem, parse_overrides
from .schema import _ALL_MODEL_SHAPE_FIELDS, Scenario
from .yaml_io import _Dumper, read_yaml


def scenario_from_dict(
    data: Any, file: str = "<scenario>", overrides: list[str] | None = None
) -> Scenario:
    """Validate a mapping (after overrides) into a Scenario, or raise ScenarioError."""
    if data is None:
        raise ScenarioError(
            file, [Problem("", "the file is empty (expected a mapping of scenario fields)")]
        )
    if not isinstance(data, dict):
        kind = {"list": "a list", "str": "a string"}.get(type(data).__name__, type(data).__name__)
        raise ScenarioError(
            file, [Problem("", f"must be a YAML mapping of scenario fields (got {kind})")]
        )
    _check_acyclic(data, file)
    data = copy.deepcopy(data)
    try:
        parsed = parse_overrides(overrides)
    except ScenarioError as exc:
        raise ScenarioError(file, [Problem("--set", p.message) for p in exc.problems]) from None
    set_paths: list[str] = []
    problems: list[Problem] = []
    for path, value in parsed:
        try:
            _apply_override(data, path, value)
            set_paths.append(".".join(map(str, path)))
        except _OverrideProblem as exc:
            problems.append(Problem(exc.path, f"{exc.message} (from --set)"))
    if problems:
        raise ScenarioError(file, problems)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = _problems_from(exc, Scenario)
        failed = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        if failed:  # some field failed, so Scenario's cross-section checks did not run
            problems += [Problem(p, m) for p, m in _cross_problems_of_valid_sections(data, failed)]
        problems = [
            Problem(p.path, f"{p.message} (from --set)")
            if any(_is_under(p.path, sp) for sp in set_paths)
            else p
            for p in problems
        ]
        raise ScenarioError(file, _unique(problems)) from None
    except (_FieldProblem, _MultiProblem) as exc:  # raised outside a model (should not happen)
        pairs = exc.problems if isinstance(exc, _MultiProblem) else [(exc.field, exc.message)]
        raise ScenarioError(file, [Problem(p, m) for p, m in pairs]) from None
    except RecursionError:
        raise ScenarioError(file, [Problem("", "nested too deeply")]) from None


def _check_acyclic(
    x: Any, file: str, inside: tuple[int, ...] = (), seen: set[int] | None = None
) -> None:
    """YAML aliases can make a list contain itself; refuse that instead of recursing forever.

    `seen` holds the nodes already checked, so a node shared by many aliases is walked once."""
    seen = set() if seen is None else seen
    if isinstance(x, dict | list) and id(x) not in seen:
        if id(x) in inside:
            raise ScenarioError(
                file, [Problem("", "invalid YAML: an alias refers to a node that contains it")]
            )
        for v in x.values() if isinstance(x, dict) else x:
            _check_acyclic(v, file, (*inside, id(x)), seen)
        seen.add(id(x))


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario file. Raises ScenarioError; writes nothing."""
    return scenario_from_dict(read_yaml(path), str(path), overrides)


class ScenarioErrors(Exception):
    """The problems of several scenario files, each file's as its ScenarioError."""

    def __init__(self, errors: list[ScenarioError]) -> None:
        super().__init__("\n".join(line for e in errors for line in e.lines()))
        self.errors = errors

    def lines(self) -> list[str]:
        return [line for e in self.errors for line in e.lines()]


def load_all(files: Sequence[str], overrides: list[str]) -> list[Scenario]:
    """Validate every file first; raise one ScenarioErrors listing all problems of all files."""
    out, errors = [], []
    for f in files:
        try:
            out.append(load_scenario(f, overrides))
        except ScenarioError as exc:
            errors.append(exc)
    if errors:
        raise ScenarioErrors(errors)
    return out


def resolved_yaml(scn: Scenario) -> str:
    """The fully resolved scenario (every default filled in) as YAML; it validates back to `scn`."""
    data = scn.model_dump(mode="json", exclude_none=False)
    model = data["model"]
    for k in _ALL_MODEL_SHAPE_FIELDS:
        if model.get(k) is None:
            model.pop(k, None)
    # JSON mode turns the worker-index keys into strings; YAML can keep them integers
    data["stragglers"]["slowdown"] = {int(k): v for k, v in data["stragglers"]["slowdown"].items()}
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=None,
        width=100,
        allow_unicode=True,
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the scenario format (`pssim schema`), for editors and external checks."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pssim scenario"
    return schema
