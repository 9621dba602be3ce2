"""A result folder's files as data: its summary.json and the resolved scenario.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_summary(folder: str | Path) -> dict[str, Any]:
    import json

    return json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))


def read_scenario_data(folder: str | Path) -> dict[str, Any]:
    """The resolved scenario a backend ran (its scenario.yaml) as plain data."""
    from ..scenario import read_yaml

    data = read_yaml(Path(folder) / "scenario.yaml")
    return data if isinstance(data, dict) else {}
