"""The pydantic models of the scenario format: one per section, and `Scenario`, the whole file.

Each section checks its own fields and the rules among them. Rules that relate fields of
different sections are registered with `_cross_check` (pssim.scenario.checks holds them) and run
by `Scenario`'s after-validator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .bounds import (  # noqa: F401 - re-exported: the bounds are the schema's
    MAX_BATCH,
    MAX_DIM,
    MAX_EPS,
    MAX_FABRIC_GBPS,
    MAX_FAULTS,
    MAX_GBPS,
    MAX_JITTER_CV,
    MAX_LATENCY_US,
    MAX_LAYERS,
    MAX_LR,
    MAX_MICROBATCHES,
    MAX_PARTITION_BYTES,
    MAX_PARTITIONS,
    MAX_RESTART_S,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_SEQ_LEN,
    MAX_SERVERS,
    MAX_SLOWDOWN,
    MAX_STEP_TIME_S,
    MAX_STEPS,
    MAX_WEIGHT_DECAY,
    MAX_WORKERS,
    MIN_GBPS,
    MIN_LATENCY_US,
    _bounded,
    _count,
    _num,
)
from .errors import _FieldProblem, _fmt_input, _MultiProblem


class _Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are not silently coerced.

    Strict: `steps: "10"`, `steps: true` or `overlap: 1` are refused rather than guessed at (an
    integer is still accepted where a number is expected). NaN and infinities are refused.
    """

    model_config = ConfigDict(
        extra="forbid", validate_default=True, frozen=True, allow_inf_nan=False, strict=True
    )


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
    input_dim: int | None = _count(None, "Input features (mlp, linear). Default 784.", MAX_DIM)
    hidden: list[Annotated[int, Field(gt=0, le=MAX_DIM)]] | None = Field(
        None,
        max_length=MAX_LAYERS,
        description="Hidden layer widths (mlp). Default [1024, 1024]. "
        f"Range: at most {_num(MAX_LAYERS)} layers, each 1 to {_num(MAX_DIM)} wide.",
    )
    output_dim: int | None = _count(None, "Classes (mlp, linear). Default 10.", MAX_DIM)
    layers: int | None = _count(None, "Transformer blocks. Default 12.", MAX_LAYERS)
    d_model: int | None = _count(None, "Transformer width. Default 768.", MAX_DIM)
    heads: int | None = _count(None, "Attention heads; divides d_model. Default 12.", MAX_DIM)
    seq_len: int | None = _count(None, "Tokens per sample. Default 256.", MAX_SEQ_LEN)
    vocab: int | None = _count(None, "Vocabulary size. Default 32000.", MAX_DIM)
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
    lr: float = _bounded(0.01, "Learning rate.", gt=0, le=MAX_LR)
    momentum: float = _bounded(0.0, "SGD momentum (sgd only).", ge=0, lt=1)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), description="Adam betas (adam only). Range: each >= 0 and < 1."
    )
    eps: float = _bounded(1e-8, "Adam epsilon (adam only).", gt=0, le=MAX_EPS)
    weight_decay: float = _bounded(
        0.0, "L2 weight decay added to the gradient.", ge=0, le=MAX_WEIGHT_DECAY
    )

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
    batch_size: int = _count(64, "Samples per worker (per pipeline replica) per step.", MAX_BATCH)
    steps: int = _count(60, "Steps each worker runs.", MAX_STEPS)
    warmup_steps: int = _bounded(
        5, "Each worker's first steps, left out of every metric; < steps.", ge=0, lt=MAX_STEPS
    )
    samples_per_worker: int = _count(
        1000,
        "Size of each worker's synthetic data shard (drawn from the seed); batches cycle over it.",
        MAX_SAMPLES,
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

    bandwidth_gbps: float = _bounded(
        10.0, "Per direction, 1 Gbit/s = 125e6 bytes/s.", ge=MIN_GBPS, le=MAX_GBPS, unit="Gbit/s"
    )
    latency_us: float = _bounded(
        100.0,
        "One-way latency a message pays once.",
        ge=0,
        le=MAX_LATENCY_US,
        rng=f"0, or {_num(MIN_LATENCY_US)} (1 ns) to {_num(MAX_LATENCY_US)} us",
    )

    @field_validator("latency_us")
    @classmethod
    def _latency_is_zero_or_a_nanosecond(cls, v: float) -> float:
        if 0 < v < MIN_LATENCY_US:
            raise ValueError(f"must be 0 or at least {MIN_LATENCY_US} us (1 ns) (got {v!r})")
        return v

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_gbps * 125e6


class WorkersSpec(_Strict):
    count: int = _count(
        4, "Data-parallel workers (pipeline replicas when stages > 1).", MAX_WORKERS
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="What psreal computes on.")
    per_device: int = _count(
        1, "Workers sharing one physical device (contention is modelled); <= count.", MAX_WORKERS
    )
    gpu: str | None = Field(
        None, description="Hardware-catalog name pssim uses when there is no measured profile."
    )
    nic: NicSpec = Field(default_factory=lambda: NicSpec(bandwidth_gbps=1.0, latency_us=100.0))


class ServersSpec(_Strict):
    count: int = _count(1, "Parameter-server shards, one process each.", MAX_SERVERS)
    nic: NicSpec = Field(default_factory=lambda: NicSpec(bandwidth_gbps=2.0, latency_us=100.0))


class NetworkSpec(_Strict):
    emulation: Literal["app", "kernel", "none"] = Field(
        "app",
        description="psreal link emulation: app (transport enforces links), "
        "kernel (netns + tc), none.",
    )
    fabric_gbps: float | None = _bounded(
        None,
        "Optional core bandwidth shared by all traffic.",
        ge=MIN_GBPS,
        le=MAX_FABRIC_GBPS,
        unit="Gbit/s",
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
            from ..catalog import load_catalog

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
                        f"catalog entry {w.gpu!r} is a {catalog[w.gpu].kind}, not a GPU "
                        f"(GPUs: {', '.join(gpus)})",
                    )
                )
            elif w.device == "cpu":
                problems.append(
                    (
                        "workers.gpu",
                        f"names a GPU ({w.gpu}) but workers.device is cpu; "
                        "set device: cuda or gpu: null",
                    )
                )
        if problems:
            raise _MultiProblem(problems)
        return self


# ------------------------------------------------------------------------------------- compute
class ComputeSpec(_Strict):
    """Where pssim takes compute times from: the first of these that applies."""

    step_time_s: float | None = _bounded(
        None, "Fixed forward+backward seconds per step.", gt=0, le=MAX_STEP_TIME_S, unit="s"
    )
    profile: str = Field(
        "auto",
        description="auto (use the locally cached measured profile if any), none (roofline), "
        "or a profile file path: a regular file of at most 64 MB that `psreal profile` wrote, "
        f"its times finite and at most {_num(MAX_STEP_TIME_S)} s.",
    )

    @field_validator("profile")
    @classmethod
    def _profile_is_a_profile(cls, v: str) -> str:
        # read and checked here (pssim.profile.load_profile) rather than failing once the
        # simulator starts; relative paths are read from the current directory, as the
        # simulator reads them
        from .profiles import named_profile

        why = named_profile(v)
        if isinstance(why, str):
            raise ValueError(
                f"{why}; expected auto, none or a profile file written by `psreal profile`"
            )
        return v


# ---------------------------------------------------------------------------------------- sync
class SyncSpec(_Strict):
    mode: Literal["bsp", "ssp", "asp"] = Field("bsp", description="Synchronisation mode.")
    staleness: int | None = _count(
        None, "SSP bound s (ssp only; default 2; 0 paces like bsp).", MAX_STEPS, lo=0
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
        """Clock lead a worker may have over the slowest: 0 for bsp, s for ssp, None (unbounded)
        for asp."""
        return {"bsp": 0, "ssp": self.staleness, "asp": None}[self.mode]


class ShardingSpec(_Strict):
    policy: Literal["range", "round_robin", "greedy_bytes"] = Field(
        "range", description="How partitions are placed on the shards."
    )
    partition_bytes: int = _count(
        4_000_000,
        "Parameters are cut into partitions of at most this size "
        f"(at most {_num(MAX_PARTITIONS)} partitions in all).",
        MAX_PARTITION_BYTES,
    )


class CompressionSpec(_Strict):
    kind: Literal["none", "topk", "int8"] = Field(
        "none", description="Gradient compression on push."
    )
    ratio: float = _bounded(1.0, "topk: kept fraction of each partition's gradient.", gt=0, le=1)

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
    cv: float = _bounded(
        0.0,
        "Std of a step's compute time over its jitter-free value (adds cv on average).",
        ge=0,
        le=MAX_JITTER_CV,
    )

    @model_validator(mode="after")
    def _check(self) -> JitterSpec:
        if self.distribution == "none" and self.cv != 0.0:
            raise _FieldProblem(
                "cv",
                "needs a distribution, lognormal or exponential "
                f"(got cv {self.cv} with distribution none)",
            )
        if self.distribution != "none" and self.cv == 0.0:
            raise _FieldProblem("cv", f"must be > 0 with distribution {self.distribution} (got 0)")
        return self


class StragglersSpec(_Strict):
    slowdown: dict[
        Annotated[int, Field(ge=0, lt=MAX_WORKERS)],
        Annotated[float, Field(ge=1.0, le=MAX_SLOWDOWN)],
    ] = Field(
        default_factory=dict,
        description="Worker index -> compute slowdown factor. "
        f"Range: each factor 1 to {_num(MAX_SLOWDOWN)}.",
        json_schema_extra={"propertyNames": {"pattern": "^[0-9]+$"}},  # JSON keys are strings
    )
    jitter: JitterSpec = Field(default_factory=JitterSpec)


class PipelineSpec(_Strict):
    stages: int = _count(
        1,
        "Consecutive model pieces, one process each (1 = no pipeline); <= the model's layers.",
        MAX_LAYERS,
    )
    microbatches: int = _count(1, "Microbatches per step; divides batch_size.", MAX_MICROBATCHES)
    schedule: Literal["gpipe", "1f1b"] = Field("1f1b", description="Microbatch schedule.")
    partition: Literal["balanced", "uniform"] = Field(
        "balanced", description="Cut by compute or by layer count."
    )


class FaultSpec(_Strict):
    at_step: int = _bounded(
        ..., "The worker fails when it reaches this step; < training.steps.", ge=0, lt=MAX_STEPS
    )
    worker: int = _bounded(..., "Worker index; < cluster.workers.count.", ge=0, lt=MAX_WORKERS)
    kind: Literal["crash"] = Field(
        "crash",
        description="crash: the worker loses its state as it reaches at_step; with "
        "restart_after_s it is back that much later and redoes the step from a fresh pull, "
        "without it the shards take it out of the sync rule for good.",
    )
    restart_after_s: float | None = _bounded(
        None, "Seconds until the worker is back; null: never.", ge=0, le=MAX_RESTART_S, unit="s"
    )


# ------------------------------------------------------------------------- cross-section checks
# Rules that relate fields of different sections. Each names the sections it reads, so that when
# some section is itself invalid (pydantic then skips Scenario's after-validator) the rules over
# the sections that did validate still run and every independent problem is reported at once.
# The rules live in pssim.scenario.checks, which registers them here when the package is imported.
_Sections = Any  # a Scenario, or a namespace holding the sections that validated
_CrossCheck = Callable[[_Sections], list[tuple[str, str]]]
_CROSS_CHECKS: list[tuple[frozenset[str], _CrossCheck]] = []


def _cross_check(*sections: str) -> Callable[[_CrossCheck], _CrossCheck]:
    def register(fn: _CrossCheck) -> _CrossCheck:
        _CROSS_CHECKS.append((frozenset(sections), fn))
        return fn

    return register


# ------------------------------------------------------------------------------------ scenario
class Scenario(_Strict):
    """A whole scenario. Both backends run exactly this."""

    name: str = Field(
        ..., pattern=r"^[a-z0-9_-]+$", max_length=100, description="Names the output folder."
    )
    description: str = Field("", description="Free text.")
    seed: int = _count(0, "Drives every random draw in both backends.", MAX_SEED, lo=0)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    sync: SyncSpec = Field(default_factory=SyncSpec)
    sharding: ShardingSpec = Field(default_factory=ShardingSpec)
    communication: CommunicationSpec = Field(default_factory=CommunicationSpec)
    stragglers: StragglersSpec = Field(default_factory=StragglersSpec)
    pipeline: PipelineSpec = Field(default_factory=PipelineSpec)
    faults: list[FaultSpec] = Field(
        default_factory=list,
        max_length=MAX_FAULTS,
        description=f"Injected failures (section 11). Range: at most {_num(MAX_FAULTS)}.",
    )

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
