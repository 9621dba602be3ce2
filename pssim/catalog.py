"""The hardware catalog (pssim/data/catalog.yaml) and the roofline model that reads it.

A catalog entry says what a device can do at best (peak FLOP/s per dtype, memory bandwidth and
size) and what it costs per hour. `roofline_s` turns a workload into a time on such a device:
the larger of its arithmetic time and its memory-traffic time, each at `efficiency` of peak.
Roofline is the fallback when no measured profile applies; `pssim plan` reads user catalogs in
the same format.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DATA = Path(__file__).parent / "data"


class PeakTflops(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    float32: float = Field(..., gt=0)
    bfloat16: float = Field(..., gt=0)
    float16: float = Field(..., gt=0)


class DeviceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    kind: Literal["cpu", "gpu"]
    description: str = ""
    peak_tflops: PeakTflops
    memory_gb: float = Field(..., gt=0)
    mem_bw_gbs: float = Field(..., gt=0)
    price_per_hour_usd: float = Field(..., ge=0)
    efficiency: float = Field(0.5, gt=0, le=1)
    source: str = Field(..., min_length=1)

    def flops_per_s(self, dtype: str) -> float:
        return getattr(self.peak_tflops, dtype) * 1e12 * self.efficiency

    def bytes_per_s(self) -> float:
        return self.mem_bw_gbs * 1e9 * self.efficiency


class Catalog:
    def __init__(self, entries: dict[str, DeviceEntry], path: str) -> None:
        self.entries = entries
        self.path = path

    def names(self) -> list[str]:
        return list(self.entries)

    def __getitem__(self, name: str) -> DeviceEntry:
        return self.entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self.entries


def parse_catalog(data: object, path: str) -> Catalog:
    from pydantic import ValidationError

    from .scenario.errors import Problem, ScenarioError, _problems_from

    if not isinstance(data, dict) or not data:
        raise ScenarioError(path, [Problem("", "a catalog is a mapping of device name -> entry")])
    entries, problems = {}, []
    for name, raw in data.items():
        try:
            entries[str(name)] = DeviceEntry.model_validate(raw)
        except ValidationError as exc:
            problems += [
                Problem(f"{name}.{p.path}" if p.path else str(name), p.message)
                for p in _problems_from(exc, DeviceEntry)
            ]
    if problems:
        raise ScenarioError(path, problems)
    return Catalog(entries, path)


@lru_cache(maxsize=8)
def load_catalog(path: str | None = None) -> Catalog:
    """The built-in catalog, or a user catalog file in the same format."""
    from .scenario.yaml_io import read_yaml

    p = str(path) if path else str(DATA / "catalog.yaml")
    return parse_catalog(read_yaml(p), p)


def roofline_s(entry: DeviceEntry, flops: float, bytes_moved: float, dtype: str) -> float:
    """Time for `flops` arithmetic and `bytes_moved` memory traffic on `entry` (roofline)."""
    return max(flops / entry.flops_per_s(dtype), bytes_moved / entry.bytes_per_s())
