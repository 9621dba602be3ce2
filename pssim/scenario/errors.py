"""What is wrong with a scenario, and pydantic's validation errors said as one-line messages.

`Problem` is one thing wrong (a dotted field path and a message); `ScenarioError` carries them
and prints each as `error: FILE: field.path: message`. Validators raise `_FieldProblem` or
`_MultiProblem` to name fields relative to their section; `_problems_from` turns a pydantic
`ValidationError` into Problems. The translation walks any pydantic model given as `root` (the
scenario, or a hardware-catalog entry), so this module imports none of the schema.
"""

from __future__ import annotations

import difflib
import reprlib
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


class _FieldProblem(ValueError):
    """Raised inside validators to name a field relative to the model being validated."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _MultiProblem(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario: the dotted field path (or '' for the whole file) and why."""

    path: str
    message: str

    def line(self, file: str) -> str:
        where = f"{self.path}: " if self.path else ""
        return " ".join(f"error: {file}: {where}{self.message}".splitlines())  # always one line


class ScenarioError(Exception):
    """A scenario that cannot run. `problems` holds one entry per thing wrong."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.line(file) for p in problems))

    def lines(self) -> list[str]:
        return [p.line(self.file) for p in self.problems]


def _fmt_input(v: Any) -> str:
    """A value as the user wrote it in YAML terms (null, true), shortened to stay on one line."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    s = _SHORT_REPR.repr(v)  # bounded: a YAML alias bomb must not be printed in full
    return s if len(s) <= 60 else s[:57] + "..."


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxdict, _SHORT_REPR.maxlist = 3, 6, 6
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60


def _unwrap(t: Any) -> Any:
    """Strip Annotated[...] and `X | None` down to X."""
    while True:
        origin = get_origin(t)
        if origin is Annotated:
            t = get_args(t)[0]
        elif origin is not None and type(None) in get_args(t):
            t = next(a for a in get_args(t) if a is not type(None))
        else:
            return t


def _type_at(loc: tuple[Any, ...] | list[Any], root: type[BaseModel]) -> Any:
    """The schema's type at a dotted location below `root`; None if no such place."""
    t: Any = root
    for seg in loc:
        t = _unwrap(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            field = t.model_fields.get(str(seg))
            if field is None:
                return None
            t = field.annotation
        elif get_origin(t) in (list, dict):
            t = get_args(t)[-1]
        else:
            return None
    return _unwrap(t)


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The section class at a validation-error location (for listing its fields)."""
    t = _type_at(loc, root)
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _unknown_field(loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    model = _model_at(loc[:-1], root)
    if model is None:
        return "unknown field"
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown field (did you mean '{close[0]}'?)"
    return f"unknown field (expected one of: {', '.join(known)})"


_NAME_PATTERN = r"^[a-z0-9_-]+$"


def _message(err: dict[str, Any], root: type[BaseModel]) -> str:
    t = err["type"]
    ctx = err.get("ctx") or {}
    got = f" (got {_fmt_input(err['input'])})" if "input" in err else ""
    if t == "extra_forbidden":
        return _unknown_field(err["loc"], root)
    if t == "invalid_key":
        return f"field names must be strings (got {_fmt_input(err['loc'][-1])})"
    if t == "missing":
        return "required field is missing"
    if t in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[t]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}{got}"
    if t == "literal_error":
        return f"must be one of {ctx.get('expected', '').replace(' or ', ', ')}{got}"
    if t in ("int_parsing", "int_type", "int_from_float"):
        return f"must be an integer{got}"
    if t in ("float_parsing", "float_type"):
        return f"must be a number{got}"
    if t == "finite_number":
        return f"must be a finite number{got}"
    if t in ("bool_parsing", "bool_type"):
        return f"must be true or false{got}"
    if t in ("string_type",):
        return f"must be a string{got}"
    if t == "string_pattern_mismatch":
        if ctx.get("pattern") == _NAME_PATTERN:
            return f"must be lowercase letters, digits, '_' or '-' (got {_fmt_input(err['input'])})"
        return f"must match {ctx.get('pattern')}{got}"
    if t in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping{got}"
    if t in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    if t == "string_too_short":
        return f"must have at least {ctx.get('min_length')} characters{got}"
    if t == "string_too_long":
        return f"must have at most {ctx.get('max_length')} characters{got}"
    if t == "too_short":
        return f"must have at least {ctx.get('min_length')} items{got}"
    if t == "too_long":
        n = ctx.get("actual_length")
        return f"must have at most {ctx.get('max_length')} items" + (
            f" (got {n})" if n is not None else got
        )
    if t == "recursion_loop":
        return "refers to itself (a YAML alias loop)"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg + ("" if "(got" in msg else got if t != "value_error" else "")


def _problems_from(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """One Problem per error; `root` is the model that was validated (Scenario, DeviceEntry)."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        # validators attached to a section report the offending field relative to that section
        raw = err.get("ctx", {}).get("error") if err.get("ctx") else None
        if isinstance(raw, _MultiProblem):
            for path, msg in raw.problems:
                out.append(Problem(".".join([*loc, path]) if loc else path, msg))
            continue
        if isinstance(raw, _FieldProblem):
            out.append(Problem(".".join([*loc, raw.field]), raw.message))
            continue
        # dict-key errors add a noise segment to the location
        loc = [p for p in loc if p not in ("[key]",)]
        out.append(Problem(".".join(loc), _message(err, root)))
    return _unique(out)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    uniq = []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            uniq.append(p)
    return uniq
