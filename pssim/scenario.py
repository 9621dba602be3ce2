"""The scenario format (DESIGN.md section 3): one pydantic model that both backends read.

A scenario file is YAML; `load_scenario` reads it, applies `--set a.b=value` overrides by dotted
path, validates every field and every cross-field rule, and either returns a `Scenario` or raises
`ScenarioError` carrying one `Problem` (dotted field path + message) per thing that is wrong.
Nothing here creates folders or writes files. Units are in the field names, decimal
(1 Gbit/s = 125e6 bytes/s); times are seconds unless the name says `_us`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

__all__ = [
    "Problem",
    "ScenarioError",
    "Scenario",
    "load_scenario",
    "parse_overrides",
    "scenario_from_dict",
    "resolved_yaml",
    "json_schema",
]


class _Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are not silently coerced."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True, allow_inf_nan=False)


PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]


# --------------------------------------------------------------------------------------- model
_MODEL_KIND_FIELDS: dict[str, dict[str, Any]] = {
    "linear": {"input_dim": 784, "output_dim": 10},
    "mlp": {"input_dim": 784, "hidden": [1024, 1024], "output_dim": 10},
    "transformer": {"layers": 12, "d_model": 768, "heads": 12, "seq_len": 256, "vocab": 32000},
}
_ALL_MODEL_SHAPE_FIELDS = sorted({k for v in _MODEL_KIND_FIELDS.values() for k in v})


class ModelSpec(_Strict):
    """The model both backends build. Only the fields of the chosen `kind` may be given."""

    kind: Literal["mlp", "transformer", "linear"] = Field("mlp", description="Model family.")
    input_dim: PositiveInt | None = Field(None, description="Input features (mlp, linear). Default 784.")
    hidden: list[PositiveInt] | None = Field(
        None, description="Hidden layer widths (mlp). Default [1024, 1024]."
    )
    output_dim: PositiveInt | None = Field(None, description="Classes (mlp, linear). Default 10.")
    layers: PositiveInt | None = Field(None, description="Transformer blocks. Default 12.")
    d_model: PositiveInt | None = Field(None, description="Transformer width. Default 768.")
    heads: PositiveInt | None = Field(None, description="Attention heads; divides d_model. Default 12.")
    seq_len: PositiveInt | None = Field(None, description="Tokens per sample. Default 256.")
    vocab: PositiveInt | None = Field(None, description="Vocabulary size. Default 32000.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Compute and parameter dtype on the workers."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_kind_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("kind", "mlp")
        if kind not in _MODEL_KIND_FIELDS:
            return data  # the Literal check reports it
        allowed = _MODEL_KIND_FIELDS[kind]
        wrong = [k for k in _ALL_MODEL_SHAPE_FIELDS if k in data and data[k] is not None and k not in allowed]
        if wrong:
            raise _FieldProblem(wrong[0], f"does not apply to model kind '{kind}' (its fields: {', '.join(allowed)})")
        return {**{k: v for k, v in allowed.items()}, **data}

    @model_validator(mode="after")
    def _check_shape(self) -> ModelSpec:
        if self.kind == "transformer" and self.d_model % self.heads != 0:  # type: ignore[operator]
            raise _FieldProblem("heads", f"must divide d_model={self.d_model} (got {self.heads})")
        return self


# ------------------------------------------------------------------------------------ training
class OptimizerSpec(_Strict):
    """Optimiser applied by the parameter servers to each shard."""

    name: Literal["sgd", "adam"] = Field("sgd", description="sgd (with optional momentum) or adam.")
    lr: float = Field(0.01, gt=0, description="Learning rate.")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum (sgd only).")
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), description="Adam betas (adam only)."
    )
    eps: float = Field(1e-8, gt=0, description="Adam epsilon (adam only).")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay added to the gradient.")

    @model_validator(mode="after")
    def _check(self) -> OptimizerSpec:
        if self.name == "adam" and self.momentum != 0.0:
            raise _FieldProblem("momentum", "applies to sgd only; adam uses betas")
        return self


class TrainingSpec(_Strict):
    batch_size: PositiveInt = Field(64, description="Samples per worker (per pipeline replica) per step.")
    steps: PositiveInt = Field(60, description="Steps each worker runs.")
    warmup_steps: NonNegInt = Field(5, description="Each worker's first steps, left out of every metric.")
    samples_per_worker: PositiveInt = Field(
        1000, description="Size of each worker's synthetic data shard (drawn from the seed); batches cycle over it."
    )
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if self.warmup_steps >= self.steps:
            raise _FieldProblem("warmup_steps", f"must be < steps={self.steps} (got {self.warmup_steps})")
        return self


# ------------------------------------------------------------------------------------- cluster
class NicSpec(_Strict):
    """A full-duplex network interface: egress and ingress each carry `bandwidth_gbps`."""

    bandwidth_gbps: float = Field(10.0, gt=0, description="Per direction, 1 Gbit/s = 125e6 bytes/s.")
    latency_us: float = Field(100.0, ge=0, description="One-way latency a message pays once.")

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_gbps * 125e6


class WorkersSpec(_Strict):
    count: PositiveInt = Field(4, description="Data-parallel workers (pipeline replicas when stages > 1).")
    device: Literal["cpu", "cuda"] = Field("cpu", description="What psreal computes on.")
    per_device: PositiveInt = Field(1, description="Workers sharing one physical device (contention is modelled).")
    gpu: str | None = Field(None, description="Hardware-catalog name pssim uses when there is no measured profile.")
    nic: NicSpec = Field(default_factory=lambda: NicSpec(bandwidth_gbps=1.0, latency_us=100.0))


class ServersSpec(_Strict):
    count: PositiveInt = Field(1, description="Parameter-server shards, one process each.")
    nic: NicSpec = Field(default_factory=lambda: NicSpec(bandwidth_gbps=2.0, latency_us=100.0))


class NetworkSpec(_Strict):
    emulation: Literal["app", "kernel", "none"] = Field(
        "app", description="psreal link emulation: app (transport enforces links), kernel (netns + tc), none."
    )
    fabric_gbps: float | None = Field(None, gt=0, description="Optional core bandwidth shared by all traffic.")


class ClusterSpec(_Strict):
    workers: WorkersSpec = Field(default_factory=WorkersSpec)
    servers: ServersSpec = Field(default_factory=ServersSpec)
    network: NetworkSpec = Field(default_factory=NetworkSpec)

    @model_validator(mode="after")
    def _check(self) -> ClusterSpec:
        w = self.workers
        if w.per_device > w.count:
            raise _FieldProblem("workers.per_device", f"must be <= workers.count={w.count} (got {w.per_device})")
        if w.gpu is not None:
            from .catalog import load_catalog

            names = load_catalog().names()
            if w.gpu not in names:
                raise _FieldProblem("workers.gpu", f"unknown catalog entry '{w.gpu}' (known: {', '.join(names)})")
        return self


# ------------------------------------------------------------------------------------- compute
class ComputeSpec(_Strict):
    """Where pssim takes compute times from: the first of these that applies."""

    step_time_s: float | None = Field(None, gt=0, description="Fixed forward+backward seconds per step.")
    profile: str = Field(
        "auto",
        description="auto (use the locally cached measured profile if any), none (roofline), or a profile file path.",
    )


# ---------------------------------------------------------------------------------------- sync
class SyncSpec(_Strict):
    mode: Literal["bsp", "ssp", "asp"] = Field("bsp", description="Synchronisation mode.")
    staleness: NonNegInt | None = Field(None, description="SSP bound s (ssp only; default 2; 0 paces like bsp).")

    @model_validator(mode="after")
    def _check(self) -> SyncSpec:
        if self.mode != "ssp" and self.staleness is not None:
            raise _FieldProblem("staleness", f"applies to mode ssp only (mode is {self.mode})")
        if self.mode == "ssp" and self.staleness is None:
            object.__setattr__(self, "staleness", 2)
        return self

    @property
    def bound(self) -> int | None:
        """Clock lead a worker may have over the slowest: 0 for bsp, s for ssp, None (unbounded) for asp."""
        return {"bsp": 0, "ssp": self.staleness, "asp": None}[self.mode]


class ShardingSpec(_Strict):
    policy: Literal["range", "round_robin", "greedy_bytes"] = Field(
        "range", description="How partitions are placed on the shards."
    )
    partition_bytes: PositiveInt = Field(4_000_000, description="Parameters are cut into partitions of at most this size.")


class CompressionSpec(_Strict):
    kind: Literal["none", "topk", "int8"] = Field("none", description="Gradient compression on push.")
    ratio: float = Field(1.0, gt=0, le=1, description="topk: kept fraction of each partition's gradient.")

    @model_validator(mode="after")
    def _check(self) -> CompressionSpec:
        if self.kind != "topk" and self.ratio != 1.0:
            raise _FieldProblem("ratio", f"applies to kind topk only (kind is {self.kind})")
        return self


class CommunicationSpec(_Strict):
    wire_dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Dtype of tensors on the wire.")
    compression: CompressionSpec = Field(default_factory=CompressionSpec)
    overlap: bool = Field(False, description="Push each layer's gradients while backward still runs.")


class JitterSpec(_Strict):
    distribution: Literal["none", "lognormal", "exponential"] = Field("none", description="Per-step compute jitter.")
    cv: float = Field(0.0, ge=0, description="Std of a step's compute time over its jitter-free value (adds cv on average).")

    @model_validator(mode="after")
    def _check(self) -> JitterSpec:
        if self.distribution == "none" and self.cv != 0.0:
            raise _FieldProblem("cv", "needs a distribution (lognormal or exponential)")
        if self.distribution != "none" and self.cv == 0.0:
            raise _FieldProblem("cv", f"must be > 0 with distribution {self.distribution} (got 0)")
        return self


class StragglersSpec(_Strict):
    slowdown: dict[NonNegInt, Annotated[float, Field(ge=1.0)]] = Field(
        default_factory=dict, description="Worker index -> compute slowdown factor (>= 1)."
    )
    jitter: JitterSpec = Field(default_factory=JitterSpec)


class PipelineSpec(_Strict):
    stages: PositiveInt = Field(1, description="Consecutive model pieces, one process each (1 = no pipeline).")
    microbatches: PositiveInt = Field(1, description="Microbatches per step; divides batch_size.")
    schedule: Literal["gpipe", "1f1b"] = Field("1f1b", description="Microbatch schedule.")
    partition: Literal["balanced", "uniform"] = Field("balanced", description="Cut by compute or by layer count.")


class FaultSpec(_Strict):
    at_step: NonNegInt = Field(..., description="The worker fails when it reaches this step.")
    worker: NonNegInt = Field(..., description="Worker index.")
    kind: Literal["crash"] = Field("crash", description="crash: the worker stops; it restarts if restart_after_s is set.")
    restart_after_s: float | None = Field(None, ge=0, description="Seconds until the worker is back; null: never.")


# ------------------------------------------------------------------------------------ scenario
class Scenario(_Strict):
    """A whole scenario. Both backends run exactly this."""

    name: str = Field(..., pattern=r"^[a-z0-9_-]+$", max_length=100, description="Names the output folder.")
    description: str = Field("", description="Free text.")
    seed: NonNegInt = Field(0, description="Drives every random draw in both backends.")
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    sync: SyncSpec = Field(default_factory=SyncSpec)
    sharding: ShardingSpec = Field(default_factory=ShardingSpec)
    communication: CommunicationSpec = Field(default_factory=CommunicationSpec)
    stragglers: StragglersSpec = Field(default_factory=StragglersSpec)
    pipeline: PipelineSpec = Field(default_factory=PipelineSpec)
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        problems: list[tuple[str, str]] = []
        W = self.cluster.workers.count
        for w in self.stragglers.slowdown:
            if w >= W:
                problems.append((f"stragglers.slowdown.{w}", f"no such worker (cluster.workers.count is {W})"))
        for i, f in enumerate(self.faults):
            if f.worker >= W:
                problems.append((f"faults.{i}.worker", f"no such worker (cluster.workers.count is {W})"))
            if f.at_step >= self.training.steps:
                problems.append((f"faults.{i}.at_step", f"must be < training.steps={self.training.steps} (got {f.at_step})"))
        if self.faults and self.sync.mode == "bsp":
            problems.append(("faults", "a crashed worker would stall bsp forever; use ssp or asp"))
        p = self.pipeline
        from .workload import pipeline_units

        units = pipeline_units(self.model)
        if p.stages > units:
            problems.append(("pipeline.stages", f"must be <= the model's {units} layers (got {p.stages})"))
        if self.training.batch_size % p.microbatches != 0:
            problems.append(
                ("pipeline.microbatches", f"must divide training.batch_size={self.training.batch_size} (got {p.microbatches})")
            )
        if self.communication.overlap and p.stages > 1:
            problems.append(("communication.overlap", "is not supported with pipeline.stages > 1"))
        if self.compute.step_time_s is not None and p.stages > 1:
            problems.append(("compute.step_time_s", "is per whole model; with pipeline.stages > 1 use a profile or the catalog"))
        if self.cluster.workers.device == "cpu" and self.cluster.workers.gpu is not None:
            problems.append(("cluster.workers.gpu", "names a GPU but cluster.workers.device is cpu"))
        if not problems:
            from .sharding import plan_shards

            plan = plan_shards(self)
            empty = [s for s, parts in enumerate(plan.shards) if not parts]
            if empty:
                problems.append(
                    (
                        "cluster.servers.count",
                        f"{self.cluster.servers.count} shards but only {plan.n_partitions} partitions at "
                        f"sharding.partition_bytes={self.sharding.partition_bytes}; shard {empty[0]} would be empty "
                        "(lower partition_bytes or use fewer servers)",
                    )
                )
        if problems:
            raise _MultiProblem(problems)
        return self

    # convenience -----------------------------------------------------------------------------
    @property
    def measured_steps(self) -> int:
        return self.training.steps - self.training.warmup_steps


# ------------------------------------------------------------------------------- error reporting
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
        return f"error: {file}: {where}{self.message}"


class ScenarioError(Exception):
    """A scenario that cannot run. `problems` holds one entry per thing wrong."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.line(file) for p in problems))

    def lines(self) -> list[str]:
        return [p.line(self.file) for p in self.problems]


def _fmt_input(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, dict | list):
        s = repr(v)
        return s if len(s) <= 60 else s[:57] + "..."
    return str(v)


def _message(err: dict[str, Any]) -> str:
    t = err["type"]
    ctx = err.get("ctx") or {}
    got = f" (got {_fmt_input(err['input'])})" if "input" in err else ""
    if t == "extra_forbidden":
        return "unknown field"
    if t == "missing":
        return "required field is missing"
    if t in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[t]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}{got}"
    if t == "literal_error":
        return f"must be one of {ctx.get('expected', '').replace(' or ', ', ')}{got}"
    if t in ("int_parsing", "int_type", "int_from_float"):
        return f"must be an integer{got}"
    if t in ("float_parsing", "float_type", "finite_number"):
        return f"must be a number{got}"
    if t in ("bool_parsing", "bool_type"):
        return f"must be true or false{got}"
    if t in ("string_type",):
        return f"must be a string{got}"
    if t == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}{got}"
    if t in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping{got}"
    if t in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    if t == "too_short" or t == "too_long":
        return f"{err['msg'].lower()}{got}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg + ("" if "(got" in msg else got if t != "value_error" else "")


def _problems_from(exc: ValidationError) -> list[Problem]:
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
        # tagged unions and dict-key errors add noise segments to the location
        loc = [p for p in loc if p not in ("[key]",)]
        out.append(Problem(".".join(loc), _message(err)))
    # the same problem may be reported by several union branches: keep the first of each
    seen: set[tuple[str, str]] = set()
    uniq = []
    for p in out:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            uniq.append(p)
    return uniq


# ---------------------------------------------------------------------------------- loading
def parse_overrides(items: list[str] | None) -> list[tuple[list[Any], Any]]:
    """`a.b=value` strings -> (path, value). Values are read as YAML scalars/lists ("0.5", "[1, 2]")."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise ScenarioError("--set", [Problem("", f"expected a.b=value (got {item!r})")])
        key, _, raw = item.partition("=")
        path: list[Any] = []
        for seg in key.strip().split("."):
            if not seg:
                raise ScenarioError("--set", [Problem("", f"empty field name in {key!r}")])
            path.append(int(seg) if seg.isdigit() else seg)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append((path, value))
    return out


def _apply_override(data: dict[str, Any], path: list[Any], value: Any) -> None:
    node: Any = data
    for i, seg in enumerate(path[:-1]):
        if isinstance(node, list) and isinstance(seg, int):
            if seg >= len(node):
                raise ScenarioError("--set", [Problem(".".join(map(str, path[: i + 1])), "index out of range")])
            node = node[seg]
            continue
        if not isinstance(node, dict):
            raise ScenarioError("--set", [Problem(".".join(map(str, path[:i])), "is not a mapping")])
        if node.get(seg) is None:
            node[seg] = {}
        node = node[seg]
    last = path[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ScenarioError("--set", [Problem(".".join(map(str, path[:-1])), "is not a mapping")])


def scenario_from_dict(data: Any, file: str = "<scenario>", overrides: list[str] | None = None) -> Scenario:
    """Validate a mapping (after overrides) into a Scenario, or raise ScenarioError."""
    if data is None:
        raise ScenarioError(file, [Problem("", "the file is empty")])
    if not isinstance(data, dict):
        raise ScenarioError(file, [Problem("", f"must be a YAML mapping of fields (got {type(data).__name__})")])
    data = _deep_copy(data)
    for path, value in parse_overrides(overrides):
        _apply_override(data, path, value)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(file, _problems_from(exc)) from None
    except _FieldProblem as exc:  # raised outside a model (should not happen), keep it one line
        raise ScenarioError(file, [Problem(exc.field, exc.message)]) from None


def _deep_copy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep_copy(v) for v in x]
    return x


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent last-wins is a classic scenario bug)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> Any:
    file = str(path)
    p = Path(path)
    if not p.exists():
        raise ScenarioError(file, [Problem("", "no such file")])
    if p.is_dir():
        raise ScenarioError(file, [Problem("", "is a directory, not a scenario file")])
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(file, [Problem("", f"cannot read: {exc}")]) from None
    if not text.strip():
        raise ScenarioError(file, [Problem("", "the file is empty")])
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(file, [Problem("", f"YAML syntax error: {where}{problem}")]) from None


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario file. Raises ScenarioError; writes nothing."""
    return scenario_from_dict(read_yaml(path), str(path), overrides)


def resolved_yaml(scn: Scenario) -> str:
    """The fully resolved scenario (every default filled in) as YAML; it validates back to `scn`."""
    data = scn.model_dump(mode="json", exclude_none=False)
    model = data["model"]
    for k in _ALL_MODEL_SHAPE_FIELDS:
        if model.get(k) is None:
            model.pop(k, None)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def json_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pssim scenario"
    return schema

