"""The scenario format (DESIGN.md section 3): one pydantic model that both backends read.

A scenario file is YAML; `load_scenario` reads it, applies `--set a.b=value` overrides by dotted
path, validates every field and every cross-field rule, and either returns a `Scenario` or raises
`ScenarioError` carrying one `Problem` (dotted field path + message) per thing that is wrong.
Nothing here creates folders or writes files. Units are in the field names, decimal
(1 Gbit/s = 125e6 bytes/s); times are seconds unless the name says `_us`.

What validates also runs: every number has bounds (`bounds`), and `estimates` holds what a run
would cost (simulator memory, events and simulated time, psreal's memory) to its limits; scenario
files are read only if regular and at most 1 MB, a named profile is read and checked (`profiles`).

Modules: `schema` (the pydantic models), `bounds` (every number's bounds), `checks` (the
cross-section rules), `estimates` (what a run costs, and the limits), `profiles` (a named
`compute.profile`), `errors` (Problem, ScenarioError, pydantic errors as one-line messages),
`overrides` (`--set`), `yaml_io` (the YAML dialect, `read_yaml`, bounded reading), `loading`
(`load_scenario`, `scenario_from_dict`, `resolved_yaml`, `json_schema`). Import from here.
"""

from __future__ import annotations

from . import checks  # noqa: F401 - registers the cross-section rules that Scenario runs
from .errors import Problem, ScenarioError, _problems_from
from .loading import (
    ScenarioErrors,
    json_schema,
    load_all,
    load_scenario,
    resolved_yaml,
    scenario_from_dict,
)
from .overrides import parse_overrides
from .schema import (
    MAX_LAYERS,
    MAX_PARTITIONS,
    ClusterSpec,
    CommunicationSpec,
    CompressionSpec,
    ComputeSpec,
    FaultSpec,
    JitterSpec,
    ModelSpec,
    NetworkSpec,
    NicSpec,
    OptimizerSpec,
    PipelineSpec,
    Scenario,
    ServersSpec,
    ShardingSpec,
    StragglersSpec,
    SyncSpec,
    TrainingSpec,
    WorkersSpec,
)
from .yaml_io import read_yaml

__all__ = [
    "ScenarioErrors",
    "load_all",
    "Problem",
    "ScenarioError",
    "Scenario",
    "load_scenario",
    "parse_overrides",
    "scenario_from_dict",
    "resolved_yaml",
    "json_schema",
    "read_yaml",
    "MAX_LAYERS",
    "MAX_PARTITIONS",
    "ClusterSpec",
    "CommunicationSpec",
    "CompressionSpec",
    "ComputeSpec",
    "FaultSpec",
    "JitterSpec",
    "ModelSpec",
    "NetworkSpec",
    "NicSpec",
    "OptimizerSpec",
    "PipelineSpec",
    "ServersSpec",
    "ShardingSpec",
    "StragglersSpec",
    "SyncSpec",
    "TrainingSpec",
    "WorkersSpec",
    "_problems_from",  # pssim.catalog reports its own file's errors with it
]
