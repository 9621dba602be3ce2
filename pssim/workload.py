"""What a scenario's model is, without torch: its parameters, layers, FLOPs and activation sizes.

Both backends read the model from here. `build_workload(model).params` lists the parameters in
exactly the order and with exactly the names and shapes of psreal's torch modules (a test checks
this), so that sharding, bytes on the wire and the roofline all agree with what really runs. A
model is a list of *units*: the layers a pipeline may cut between (an mlp's linear layers, a
transformer's blocks with the embeddings attached to the first and the head to the last).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from math import prod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scenario import ModelSpec

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: tuple[int, ...]
    unit: int

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class Unit:
    """One cuttable layer. Per-sample figures; FLOPs count a multiply-add as 2."""

    name: str
    params: tuple[ParamSpec, ...]
    fwd_flops_per_sample: float
    out_elems_per_sample: int  # activation handed to the next unit
    saved_elems_per_sample: float  # activations kept for backward

    @property
    def numel(self) -> int:
        return sum(p.numel for p in self.params)


@dataclass(frozen=True)
class Workload:
    units: tuple[Unit, ...]
    input_elems_per_sample: int
    dtype: str

    @cached_property
    def params(self) -> tuple[ParamSpec, ...]:
        return tuple(p for u in self.units for p in u.params)

    @property
    def numel(self) -> int:
        return sum(p.numel for p in self.params)

    @property
    def fwd_flops_per_sample(self) -> float:
        return sum(u.fwd_flops_per_sample for u in self.units)

    @property
    def train_flops_per_sample(self) -> float:
        # backward costs two forwards (input and weight gradients): the usual 3x rule
        return 3.0 * self.fwd_flops_per_sample

    def param_bytes(self) -> int:
        return self.numel * DTYPE_BYTES[self.dtype]

    def stage_units(self, bounds: list[tuple[int, int]]) -> list[tuple[Unit, ...]]:
        return [self.units[a:b] for a, b in bounds]


def _linear(prefix: str, unit: int, n_in: int, n_out: int) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec(f"{prefix}.weight", (n_out, n_in), unit),
        ParamSpec(f"{prefix}.bias", (n_out,), unit),
    )


def _layernorm(prefix: str, unit: int, d: int) -> tuple[ParamSpec, ...]:
    return (ParamSpec(f"{prefix}.weight", (d,), unit), ParamSpec(f"{prefix}.bias", (d,), unit))


def build_workload(model: ModelSpec) -> Workload:
    """The unit list of a model spec (mlp, linear or transformer)."""
    if model.kind in ("mlp", "linear"):
        widths = [model.input_dim, *(model.hidden or []), model.output_dim]
        units = []
        for i in range(len(widths) - 1):
            n_in, n_out = widths[i], widths[i + 1]
            last = i == len(widths) - 2
            units.append(
                Unit(
                    name=f"layers.{i}",
                    params=_linear(f"layers.{i}", i, n_in, n_out),
                    fwd_flops_per_sample=2.0 * n_in * n_out,
                    out_elems_per_sample=n_out,
                    # input kept for the weight gradient, pre-activation kept for ReLU's backward
                    saved_elems_per_sample=float(n_in + (0 if last else n_out)),
                )
            )
        return Workload(tuple(units), widths[0], model.dtype)

    d, L, s, v, h = model.d_model, model.layers, model.seq_len, model.vocab, model.heads
    units = []
    for i in range(L):
        params: list[ParamSpec] = []
        flops = s * (24.0 * d * d + 4.0 * s * d)  # qkv 6d^2, proj 2d^2, mlp 16d^2, QK^T and AV 4sd
        if i == 0:
            params += [
                ParamSpec("tok_emb.weight", (v, d), 0),
                ParamSpec("pos_emb.weight", (s, d), 0),
            ]
        b = f"blocks.{i}"
        params += [
            *_layernorm(f"{b}.ln1", i, d),
            *_linear(f"{b}.attn.qkv", i, d, 3 * d),
            *_linear(f"{b}.attn.proj", i, d, d),
            *_layernorm(f"{b}.ln2", i, d),
            *_linear(f"{b}.mlp.fc1", i, d, 4 * d),
            *_linear(f"{b}.mlp.fc2", i, 4 * d, d),
        ]
        if i == L - 1:
            params += [*_layernorm("ln_f", i, d), ParamSpec("head.weight", (v, d), i)]
            flops += 2.0 * s * d * v
        # Korthikanti et al. 2022, "Reducing Activation Recomputation", eq. 1: per layer
        # s*b*h*(34 + 5*a*s/h) bytes in 16-bit, i.e. (17 + 2.5*a*s/h)*s*h elements per sample
        saved = s * d * (17.0 + 2.5 * h * s / d)
        units.append(Unit(b, tuple(params), flops, s * d, saved))
    return Workload(tuple(units), s, model.dtype)


def pipeline_units(model: ModelSpec) -> int:
    """How many consecutive pieces the model can be cut into at most."""
    if model.kind in ("mlp", "linear"):
        return len(model.hidden or []) + 1
    return int(model.layers)  # type: ignore[arg-type]
