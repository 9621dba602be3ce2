"""The scenario format (DESIGN.md section 3): one pydantic model that both backends read.

A scenario file is YAML; `load_scenario` reads it, applies `--set a.b=value` overrides by dotted
path, validates every field and every cross-field rule, and either returns a `Scenario` or raises
`ScenarioError` carrying one `Problem` (dotted field path + message) per thing that is wrong.
Nothing here creates folders or writes files. Units are in the field names, decimal
(1 Gbit/s = 125e6 bytes/s); times are seconds unless the name says `_us`.
"""

from __future__ import annotations

import copy
import difflib
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
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
    "read_yaml",
]


class _Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are not silently coerced.

    Strict: `steps: "10"`, `steps: true` or `overlap: 1` are refused rather than guessed at (an
    integer is still accepted where a number is expected). NaN and infinities are refused.
    """

    model_config = ConfigDict(
        extra="forbid", validate_default=True, frozen=True, allow_inf_nan=False, strict=True
    )


# more partitions than this make planning slow and say nothing new: real PS systems cut at ~MBs
MAX_PARTITIONS = 100_000
# a typo like `layers: 1200000` must be refused, not make validation build a million layers
MAX_LAYERS = 10_000

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
    input_dim: PositiveInt | None = Field(
        None, description="Input features (mlp, linear). Default 784."
    )
    hidden: list[PositiveInt] | None = Field(
        None, max_length=MAX_LAYERS, description="Hidden layer widths (mlp). Default [1024, 1024]."
    )
    output_dim: PositiveInt | None = Field(None, description="Classes (mlp, linear). Default 10.")
    layers: PositiveInt | None = Field(
        None, le=MAX_LAYERS, description="Transformer blocks. Default 12."
    )
    d_model: PositiveInt | None = Field(None, description="Transformer width. Default 768.")
    heads: PositiveInt | None = Field(
        None, description="Attention heads; divides d_model. Default 12."
    )
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
        if not isinstance(kind, str) or kind not in _MODEL_KIND_FIELDS:
            return data  # the Literal check reports it
        allowed = _MODEL_KIND_FIELDS[kind]
        wrong = [k for k in _ALL_MODEL_SHAPE_FIELDS if data.get(k) is not None and k not in allowed]
        if wrong:
            raise _MultiProblem(
                [
                    (k, f"does not apply to model kind '{kind}' (its fields: {', '.join(allowed)})")
                    for k in wrong
                ]
            )
        # an absent or null shape field takes the kind's default, so a resolved scenario (which
        # leaves out the other kinds' fields) validates back to the same model
        return {**data, **{k: v for k, v in allowed.items() if data.get(k) is None}}

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

    @field_validator("betas", mode="before")
    @classmethod
    def _betas_from_list(cls, v: Any) -> Any:
        # YAML has lists, not tuples; a strict tuple field would refuse every file
        if isinstance(v, list | tuple):
            if len(v) != 2:
                raise ValueError(
                    f"must be a list of 2 numbers [beta1, beta2] (got {_fmt_input(v)})"
                )
            return tuple(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> OptimizerSpec:
        if self.name == "adam" and self.momentum != 0.0:
            raise _FieldProblem(
                "momentum",
                f"applies to sgd only; adam uses betas (got momentum {self.momentum} with adam)",
            )
        return self


class TrainingSpec(_Strict):
    batch_size: PositiveInt = Field(
        64, description="Samples per worker (per pipeline replica) per step."
    )
    steps: PositiveInt = Field(60, description="Steps each worker runs.")
    warmup_steps: NonNegInt = Field(
        5, description="Each worker's first steps, left out of every metric."
    )
    samples_per_worker: PositiveInt = Field(
        1000,
        description="Size of each worker's synthetic data shard (drawn from the seed); batches cycle over it.",
    )
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if self.warmup_steps >= self.steps:
            raise _FieldProblem(
                "warmup_steps", f"must be < steps={self.steps} (got {self.warmup_steps})"
            )
        return self


# ------------------------------------------------------------------------------------- cluster
class NicSpec(_Strict):
    """A full-duplex network interface: egress and ingress each carry `bandwidth_gbps`."""

    bandwidth_gbps: float = Field(
        10.0, gt=0, description="Per direction, 1 Gbit/s = 125e6 bytes/s."
    )
    latency_us: float = Field(100.0, ge=0, description="One-way latency a message pays once.")

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_gbps * 125e6


class WorkersSpec(_Strict):
    count: PositiveInt = Field(
        4, description="Data-parallel workers (pipeline replicas when stages > 1)."
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="What psreal computes on.")
    per_device: PositiveInt = Field(
        1, description="Workers sharing one physical device (contention is modelled)."
    )
    gpu: str | None = Field(
        None, description="Hardware-catalog name pssim uses when there is no measured profile."
    )
    nic: NicSpec = Field(default_factory=lambda: NicSpec(bandwidth_gbps=1.0, latency_us=100.0))


class ServersSpec(_Strict):
    count: PositiveInt = Field(1, description="Parameter-server shards, one process each.")
    nic: NicSpec = Field(default_factory=lambda: NicSpec(bandwidth_gbps=2.0, latency_us=100.0))


class NetworkSpec(_Strict):
    emulation: Literal["app", "kernel", "none"] = Field(
        "app",
        description="psreal link emulation: app (transport enforces links), kernel (netns + tc), none.",
    )
    fabric_gbps: float | None = Field(
        None, gt=0, description="Optional core bandwidth shared by all traffic."
    )


class ClusterSpec(_Strict):
    workers: WorkersSpec = Field(default_factory=WorkersSpec)
    servers: ServersSpec = Field(default_factory=ServersSpec)
    network: NetworkSpec = Field(default_factory=NetworkSpec)

    @model_validator(mode="after")
    def _check(self) -> ClusterSpec:
        w = self.workers
        problems: list[tuple[str, str]] = []
        if w.per_device > w.count:
            problems.append(
                ("workers.per_device", f"must be <= workers.count={w.count} (got {w.per_device})")
            )
        if w.gpu is not None:
            from .catalog import load_catalog

            catalog = load_catalog()
            gpus = [n for n in catalog.names() if catalog[n].kind == "gpu"]
            if w.gpu not in catalog:
                problems.append(
                    ("workers.gpu", f"unknown catalog GPU {w.gpu!r} (known: {', '.join(gpus)})")
                )
            elif catalog[w.gpu].kind != "gpu":
                problems.append(
                    (
                        "workers.gpu",
                        f"catalog entry {w.gpu!r} is a {catalog[w.gpu].kind}, not a GPU (GPUs: {', '.join(gpus)})",
                    )
                )
            elif w.device == "cpu":
                problems.append(
                    (
                        "workers.gpu",
                        f"names a GPU ({w.gpu}) but workers.device is cpu; set device: cuda or gpu: null",
                    )
                )
        if problems:
            raise _MultiProblem(problems)
        return self


# ------------------------------------------------------------------------------------- compute
class ComputeSpec(_Strict):
    """Where pssim takes compute times from: the first of these that applies."""

    step_time_s: float | None = Field(
        None, gt=0, description="Fixed forward+backward seconds per step."
    )
    profile: str = Field(
        "auto",
        description="auto (use the locally cached measured profile if any), none (roofline), or a profile file path.",
    )

    @field_validator("profile")
    @classmethod
    def _profile_exists(cls, v: str) -> str:
        # refused here rather than as a crash once the simulator starts; relative paths are read
        # from the current directory, as the simulator reads them
        if v in ("auto", "none"):
            return v
        p = Path(v)
        if not p.is_file():
            what = "is a directory" if p.is_dir() else "no such file"
            raise ValueError(
                f"must be auto, none or a profile file written by `psreal profile` ({what}: {v!r})"
            )
        return v


# ---------------------------------------------------------------------------------------- sync
class SyncSpec(_Strict):
    mode: Literal["bsp", "ssp", "asp"] = Field("bsp", description="Synchronisation mode.")
    staleness: NonNegInt | None = Field(
        None, description="SSP bound s (ssp only; default 2; 0 paces like bsp)."
    )

    @model_validator(mode="after")
    def _check(self) -> SyncSpec:
        if self.mode != "ssp" and self.staleness is not None:
            raise _FieldProblem(
                "staleness",
                f"applies to mode ssp only; remove it or set mode: ssp (got mode {self.mode})",
            )
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
    partition_bytes: PositiveInt = Field(
        4_000_000,
        description=f"Parameters are cut into partitions of at most this size (at most {MAX_PARTITIONS} partitions in all).",
    )


class CompressionSpec(_Strict):
    kind: Literal["none", "topk", "int8"] = Field(
        "none", description="Gradient compression on push."
    )
    ratio: float = Field(
        1.0, gt=0, le=1, description="topk: kept fraction of each partition's gradient."
    )

    @model_validator(mode="after")
    def _check(self) -> CompressionSpec:
        if self.kind != "topk" and self.ratio != 1.0:
            raise _FieldProblem(
                "ratio",
                f"applies to kind topk only; remove it or set kind: topk (got kind {self.kind})",
            )
        return self


class CommunicationSpec(_Strict):
    wire_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Dtype of tensors on the wire."
    )
    compression: CompressionSpec = Field(default_factory=CompressionSpec)
    overlap: bool = Field(
        False, description="Push each layer's gradients while backward still runs."
    )


class JitterSpec(_Strict):
    distribution: Literal["none", "lognormal", "exponential"] = Field(
        "none", description="Per-step compute jitter."
    )
    cv: float = Field(
        0.0,
        ge=0,
        description="Std of a step's compute time over its jitter-free value (adds cv on average).",
    )

    @model_validator(mode="after")
    def _check(self) -> JitterSpec:
        if self.distribution == "none" and self.cv != 0.0:
            raise _FieldProblem(
                "cv",
                f"needs a distribution, lognormal or exponential (got cv {self.cv} with distribution none)",
            )
        if self.distribution != "none" and self.cv == 0.0:
            raise _FieldProblem("cv", f"must be > 0 with distribution {self.distribution} (got 0)")
        return self


class StragglersSpec(_Strict):
    slowdown: dict[NonNegInt, Annotated[float, Field(ge=1.0)]] = Field(
        default_factory=dict,
        description="Worker index -> compute slowdown factor (>= 1).",
        json_schema_extra={"propertyNames": {"pattern": "^[0-9]+$"}},  # JSON keys are strings
    )
    jitter: JitterSpec = Field(default_factory=JitterSpec)


class PipelineSpec(_Strict):
    stages: PositiveInt = Field(
        1, description="Consecutive model pieces, one process each (1 = no pipeline)."
    )
    microbatches: PositiveInt = Field(1, description="Microbatches per step; divides batch_size.")
    schedule: Literal["gpipe", "1f1b"] = Field("1f1b", description="Microbatch schedule.")
    partition: Literal["balanced", "uniform"] = Field(
        "balanced", description="Cut by compute or by layer count."
    )


class FaultSpec(_Strict):
    at_step: NonNegInt = Field(..., description="The worker fails when it reaches this step.")
    worker: NonNegInt = Field(..., description="Worker index.")
    kind: Literal["crash"] = Field(
        "crash",
        description="crash: the worker loses its state as it reaches at_step; with restart_after_s it is back that much later and redoes the step from a fresh pull, without it the shards take it out of the sync rule for good.",
    )
    restart_after_s: float | None = Field(
        None, ge=0, description="Seconds until the worker is back; null: never."
    )


# ------------------------------------------------------------------------- cross-section checks
# Rules that relate fields of different sections. Each names the sections it reads, so that when
# some section is itself invalid (pydantic then skips Scenario's after-validator) the rules over
# the sections that did validate still run and every independent problem is reported at once.
_Sections = Any  # a Scenario, or a namespace holding the sections that validated
_CrossCheck = Callable[[_Sections], list[tuple[str, str]]]
_CROSS_CHECKS: list[tuple[frozenset[str], _CrossCheck]] = []


def _cross_check(*sections: str) -> Callable[[_CrossCheck], _CrossCheck]:
    def register(fn: _CrossCheck) -> _CrossCheck:
        _CROSS_CHECKS.append((frozenset(sections), fn))
        return fn

    return register


@_cross_check("stragglers", "cluster")
def _check_straggler_workers(s: _Sections) -> list[tuple[str, str]]:
    W = s.cluster.workers.count
    return [
        (
            f"stragglers.slowdown.{w}",
            f"no such worker: must be < cluster.workers.count={W} (got {w})",
        )
        for w in s.stragglers.slowdown
        if w >= W
    ]


@_cross_check("faults", "cluster")
def _check_fault_workers(s: _Sections) -> list[tuple[str, str]]:
    W = s.cluster.workers.count
    return [
        (
            f"faults.{i}.worker",
            f"no such worker: must be < cluster.workers.count={W} (got {f.worker})",
        )
        for i, f in enumerate(s.faults)
        if f.worker >= W
    ]


@_cross_check("faults", "training")
def _check_fault_steps(s: _Sections) -> list[tuple[str, str]]:
    n = s.training.steps
    return [
        (f"faults.{i}.at_step", f"must be < training.steps={n} (got {f.at_step})")
        for i, f in enumerate(s.faults)
        if f.at_step >= n
    ]


@_cross_check("faults")
def _check_fault_order(s: _Sections) -> list[tuple[str, str]]:
    out, seen, gone = [], set(), {}
    for i, f in enumerate(s.faults):
        if (f.worker, f.at_step) in seen:
            out.append((f"faults.{i}", f"worker {f.worker} already crashes at step {f.at_step}"))
        seen.add((f.worker, f.at_step))
        if f.restart_after_s is None:
            gone[f.worker] = min(gone.get(f.worker, f.at_step), f.at_step)
    for i, f in enumerate(s.faults):
        if f.worker in gone and f.at_step > gone[f.worker]:
            out.append(
                (
                    f"faults.{i}.at_step",
                    f"worker {f.worker} crashed for good at step {gone[f.worker]} (got {f.at_step})",
                )
            )
    return out


@_cross_check("pipeline", "model")
def _check_stages(s: _Sections) -> list[tuple[str, str]]:
    from .workload import pipeline_units

    units = pipeline_units(s.model)
    if s.pipeline.stages > units:
        return [
            ("pipeline.stages", f"must be <= the model's {units} layers (got {s.pipeline.stages})")
        ]
    return []


@_cross_check("pipeline", "training")
def _check_microbatches(s: _Sections) -> list[tuple[str, str]]:
    B, M = s.training.batch_size, s.pipeline.microbatches
    if B % M != 0:
        return [("pipeline.microbatches", f"must divide training.batch_size={B} (got {M})")]
    return []


@_cross_check("communication", "pipeline")
def _check_overlap(s: _Sections) -> list[tuple[str, str]]:
    if s.communication.overlap and s.pipeline.stages > 1:
        return [
            (
                "communication.overlap",
                f"is not supported with pipeline.stages > 1 (got stages={s.pipeline.stages})",
            )
        ]
    return []


@_cross_check("communication", "compute")
def _check_overlap_compute(s: _Sections) -> list[tuple[str, str]]:
    if s.communication.overlap and s.compute.step_time_s is not None:
        return [
            (
                "communication.overlap",
                "needs the backward pass's timeline, which compute.step_time_s does not give; "
                "leave step_time_s null (profile or catalog roofline)",
            )
        ]
    return []


@_cross_check("compute", "pipeline")
def _check_step_time(s: _Sections) -> list[tuple[str, str]]:
    if s.compute.step_time_s is not None and s.pipeline.stages > 1:
        return [
            (
                "compute.step_time_s",
                f"is per whole model and cannot be split over pipeline.stages={s.pipeline.stages}; "
                "leave it null (profile or catalog roofline)",
            )
        ]
    return []


def _partition_count(model: ModelSpec, partition_bytes: int) -> tuple[int, int]:
    """(partitions the parameters are cut into, the smallest partition_bytes that stays within MAX_PARTITIONS)."""
    from .workload import DTYPE_BYTES, build_workload

    eb = DTYPE_BYTES[model.dtype]
    per = max(1, partition_bytes // eb)  # elements per partition, as sharding.cut_partitions cuts
    numels = [p.numel for p in build_workload(model).params]
    n = sum(-(-k // per) for k in numels)
    least = eb * -(-sum(numels) // max(1, MAX_PARTITIONS - len(numels)))
    return n, least


@_cross_check("model", "sharding")
def _check_partition_count(s: _Sections) -> list[tuple[str, str]]:
    pb = s.sharding.partition_bytes
    n, least = _partition_count(s.model, pb)
    if n > MAX_PARTITIONS:
        return [
            (
                "sharding.partition_bytes",
                f"cuts the model into {n} partitions, more than {MAX_PARTITIONS}; use >= {least} (got {pb})",
            )
        ]
    return []


@_cross_check("model", "sharding", "cluster")
def _check_empty_shards(s: _Sections) -> list[tuple[str, str]]:
    from .sharding import plan_shards

    if _partition_count(s.model, s.sharding.partition_bytes)[0] > MAX_PARTITIONS:
        return []  # reported by _check_partition_count; not worth building
    plan = plan_shards(s)
    S, pb = s.cluster.servers.count, s.sharding.partition_bytes
    empty = [k for k, parts in enumerate(plan.shards) if not parts]
    if not empty:
        return []
    if plan.n_partitions < S:
        msg = (
            f"must be <= {plan.n_partitions}, the number of parameter partitions at "
            f"sharding.partition_bytes={pb}, or a shard is left empty (got {S}); "
            "lower partition_bytes or use fewer servers"
        )
    else:
        msg = (
            f"shard {empty[0]} would hold no parameters under sharding.policy={s.sharding.policy} "
            f"with {plan.n_partitions} partitions (got {S} servers); lower sharding.partition_bytes, "
            "use fewer servers or another policy"
        )
    return [("cluster.servers.count", msg)]


def _cross_problems_of_valid_sections(
    data: dict[str, Any], failed: set[str]
) -> list[tuple[str, str]]:
    """The cross-section rules over the sections that validate on their own (see _CROSS_CHECKS)."""
    sections: dict[str, Any] = {}
    for name, info in Scenario.model_fields.items():
        if name in failed:
            continue
        raw = data[name] if name in data else info.get_default(call_default_factory=True)
        try:
            sections[name] = TypeAdapter(info.annotation).validate_python(raw, strict=True)
        except (ValidationError, _FieldProblem, _MultiProblem):
            continue
    ns = SimpleNamespace(**sections)
    out: list[tuple[str, str]] = []
    for needs, check in _CROSS_CHECKS:
        if needs <= sections.keys():
            out += check(ns)
    return out


# ------------------------------------------------------------------------------------ scenario
class Scenario(_Strict):
    """A whole scenario. Both backends run exactly this."""

    name: str = Field(
        ..., pattern=r"^[a-z0-9_-]+$", max_length=100, description="Names the output folder."
    )
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
        problems = [p for _, check in _CROSS_CHECKS for p in check(self)]
        if problems:
            raise _MultiProblem(problems)
        return self

    # convenience -----------------------------------------------------------------------------
    @property
    def measured_steps(self) -> int:
        return self.training.steps - self.training.warmup_steps

    def crashes_of(self, worker: int) -> dict[int, float | None]:
        """The faults of `worker`: step it crashes at -> seconds it is down (None: for good)."""
        return {f.at_step: f.restart_after_s for f in self.faults if f.worker == worker}


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


def _type_at(loc: tuple[Any, ...] | list[Any], root: type[BaseModel] | None = None) -> Any:
    """The schema's type at a dotted location below `root` (default: Scenario); None if no such place."""
    t: Any = root or Scenario
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


def _model_at(loc: tuple[Any, ...], root: type[BaseModel] | None = None) -> type[BaseModel] | None:
    """The section class at a validation-error location (for listing its fields)."""
    t = _type_at(loc, root)
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _unknown_field(loc: tuple[Any, ...], root: type[BaseModel] | None = None) -> str:
    model = _model_at(loc[:-1], root)
    if model is None:
        return "unknown field"
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown field (did you mean '{close[0]}'?)"
    return f"unknown field (expected one of: {', '.join(known)})"


_NAME_PATTERN = r"^[a-z0-9_-]+$"


def _message(err: dict[str, Any], root: type[BaseModel] | None = None) -> str:
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


def _problems_from(exc: ValidationError, root: type[BaseModel] | None = None) -> list[Problem]:
    """One Problem per error; `root` is the model that was validated (default: Scenario)."""
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


# ---------------------------------------------------------------------------------- loading
class _OverrideProblem(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def parse_overrides(items: list[str] | None) -> list[tuple[list[Any], Any]]:
    """`a.b=value` strings -> (path, value). Values are read as YAML ("0.5", "1e-3", "[1, 2]", "null").

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
                if get_origin(_type_at(path[: i + 1])) is list:
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
        problems = _problems_from(exc)
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent last-wins is a classic scenario bug) and
    reads `1e-3` as a number, as YAML 1.2 and every user do (PyYAML's YAML 1.1 reads a string)."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict:
    own: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a key must be a plain name (got {_fmt_input(key)})",
                key_node.start_mark,
            ) from None
        if key in own:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        own[key] = True
    # `<<: *anchor` merge keys: the merged pairs come first, the mapping's own keys override them
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        mapping[loader.construct_object(key_node, deep=deep)] = loader.construct_object(
            value_node, deep=deep
        )
    return mapping


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes what _UniqueKeyLoader would read as a number (a name like `1e5`)."""


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
for _cls in (_UniqueKeyLoader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789."))


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file (duplicate keys refused) or raise ScenarioError naming the file."""
    file = str(path)
    p = Path(path)
    if not p.exists():
        raise ScenarioError(file, [Problem("", "no such file")])
    if p.is_dir():
        raise ScenarioError(file, [Problem("", "is a directory, not a scenario file")])
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            file, [Problem("", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise ScenarioError(file, [Problem("", f"cannot read: {exc.strerror or exc}")]) from None
    if not text.strip():
        raise ScenarioError(
            file, [Problem("", "the file is empty (expected a mapping of scenario fields)")]
        )
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = ", ".join(
            x for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x
        )
        raise ScenarioError(
            file, [Problem("", f"invalid YAML{where}: {what or str(exc).splitlines()[0]}")]
        ) from None
    except RecursionError:
        raise ScenarioError(file, [Problem("", "invalid YAML: nested too deeply")]) from None


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
