"""The scenario's model as torch modules, and its synthetic data drawn from the seed.

Modules are built so that `named_parameters()` yields exactly `pssim.workload`'s parameter layout
(names, shapes, order): sharding and bytes on the wire are computed once, in pssim, for both
backends. A model is a sequence of units; `StageModule` holds the units [a, b) of a pipeline stage.

Data is synthetic and learnable, never downloaded: for mlp/linear, inputs are standard normal and
labels come from a fixed random linear teacher; for the transformer, each sample is an affine
sequence t[i+1] = (a * t[i] + b) mod vocab from a random start, and the task is next-token
prediction. Worker w draws its shard with torch.Generator seeded by (seed, w).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pssim.scenario import ModelSpec
from pssim.workload import build_workload

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _Block(nn.Module):
    """Pre-norm transformer block (causal self-attention + 4x MLP)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(d, 3 * d)
        self.attn.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(d, 4 * d)
        self.mlp.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.attn.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (z.view(B, T, self.heads, D // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.ln2(x))))


class Model(nn.Module):
    """Whole model or one pipeline stage: units [first, last) of the scenario's model."""

    def __init__(self, spec: ModelSpec, first: int = 0, last: int | None = None) -> None:
        super().__init__()
        self.spec = spec
        n_units = len(build_workload(spec).units)
        self.first, self.last = first, n_units if last is None else last
        self.n_units = n_units
        if spec.kind in ("mlp", "linear"):
            widths = [spec.input_dim, *(spec.hidden or []), spec.output_dim]
            self.layers = nn.Module()
            for i in range(self.first, self.last):
                self.layers.add_module(str(i), nn.Linear(widths[i], widths[i + 1]))
        else:
            d, v, s = spec.d_model, spec.vocab, spec.seq_len
            if self.first == 0:
                self.tok_emb = nn.Embedding(v, d)
                self.pos_emb = nn.Embedding(s, d)
            self.blocks = nn.Module()
            for i in range(self.first, self.last):
                self.blocks.add_module(str(i), _Block(d, spec.heads))
            if self.last == n_units:
                self.ln_f = nn.LayerNorm(d)
                self.head = nn.Linear(d, v, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)

    @property
    def is_last(self) -> bool:
        return self.last == self.n_units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.kind in ("mlp", "linear"):
            for i in range(self.first, self.last):
                x = getattr(self.layers, str(i))(x)
                if i < self.n_units - 1:
                    x = F.relu(x)
            return x
        if self.first == 0:
            pos = torch.arange(x.shape[1], device=x.device)
            x = self.tok_emb(x) + self.pos_emb(pos)
        for i in range(self.first, self.last):
            x = getattr(self.blocks, str(i))(x)
        if self.is_last:
            x = self.head(self.ln_f(x))
        return x

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.spec.kind == "transformer":
            return F.cross_entropy(out.float().reshape(-1, out.shape[-1]), y.reshape(-1))
        return F.cross_entropy(out.float(), y)


def build_model(spec: ModelSpec, seed: int, first: int = 0, last: int | None = None) -> Model:
    """Deterministic initial weights from the seed (the servers hold the authoritative copy)."""
    torch.manual_seed(seed)
    full = Model(spec)  # init the whole model so every stage sees the same initial weights
    if first == 0 and (last is None or last == full.n_units):
        return full.to(TORCH_DTYPES[spec.dtype])
    stage = Model(spec, first, last)
    stage.load_state_dict({k: v for k, v in full.state_dict().items() if k in stage.state_dict()})
    return stage.to(TORCH_DTYPES[spec.dtype])


def initial_flat_params(spec: ModelSpec, seed: int) -> list[torch.Tensor]:
    """The initial parameters in layout order, as float32 (what the servers start from)."""
    m = build_model(spec, seed)
    return [p.detach().float().reshape(-1).clone() for p in m.parameters()]


def synthetic_data(
    spec: ModelSpec, seed: int, worker: int, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Worker `worker`'s data shard: n (input, target) samples drawn from (seed, worker)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * worker + 17)
    if spec.kind in ("mlp", "linear"):
        teacher = torch.Generator().manual_seed(seed * 1_000_003 + 11)
        w_t = torch.randn(spec.input_dim, spec.output_dim, generator=teacher)
        x = torch.randn(n, spec.input_dim, generator=g)
        y = (x @ w_t).argmax(dim=1)
        return x.to(TORCH_DTYPES[spec.dtype]), y
    v, s = spec.vocab, spec.seq_len
    start = torch.randint(0, v, (n, 1), generator=g)
    a, b = 5 % v or 1, 3 % v
    seq = [start]
    for _ in range(s):
        seq.append((a * seq[-1] + b) % v)
    toks = torch.cat(seq, dim=1)
    return toks[:, :-1].contiguous(), toks[:, 1:].contiguous()


def local_batch(
    x: torch.Tensor, y: torch.Tensor, step: int, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step `step`'s batch of a worker's shard: samples [step*B, (step+1)*B) modulo the shard size
    (the worker's compute phase starts with this gather; the profiler times it too)."""
    idx = torch.arange(step * batch, (step + 1) * batch, device=x.device) % x.shape[0]
    return x[idx], y[idx]
