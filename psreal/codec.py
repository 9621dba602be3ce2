"""Encoding tensors for the wire, exactly as `pssim.wire` sizes them.

A push payload is a shard's gradient, partition by partition: dense in `wire_dtype`, or top-k
(int32 indices then `wire_dtype` values per partition), or int8 (a float32 max-abs scale then int8
values per partition). Pull replies and pipeline activations are dense in `wire_dtype`. Payloads
are flat uint8 tensors, so gloo moves bytes and the byte counts are the ones pssim predicts.
"""

from __future__ import annotations

import torch

from pssim.wire import topk_k

from .models import TORCH_DTYPES


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8).reshape(-1)


def encode_dense(flat: torch.Tensor, wire_dtype: str, copy: bool = False) -> torch.Tensor:
    """`flat` in `wire_dtype` as bytes: a view of `flat` itself when it is of that dtype already,
    unless `copy` (a shard's reply must be a snapshot: its parameters change in place with the
    next update while the reply may still be on its way)."""
    return as_bytes(flat.to(TORCH_DTYPES[wire_dtype], copy=copy))


def view_as(buf: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`buf` (uint8) viewed as `dtype`; copied first when its offset is not aligned for `dtype`
    (top-k and int8 payloads mix 1-, 2- and 4-byte fields, so a field may start anywhere)."""
    if buf.storage_offset() % torch.empty((), dtype=dtype).element_size():
        buf = buf.clone()
    return buf.view(dtype)


def decode_dense(payload: torch.Tensor, wire_dtype: str) -> torch.Tensor:
    """A view (no copy) of the payload as wire_dtype values."""
    return payload.view(TORCH_DTYPES[wire_dtype])


def encode_push(
    parts: list[torch.Tensor], wire_dtype: str, kind: str, ratio: float
) -> torch.Tensor:
    """Encode the gradient partitions of one shard (1-D tensors, any float dtype) into bytes."""
    wd = TORCH_DTYPES[wire_dtype]
    if kind == "none":
        return as_bytes(
            torch.cat([p.reshape(-1) for p in parts]).to(wd)
            if len(parts) > 1
            else parts[0].reshape(-1).to(wd)
        )
    chunks: list[torch.Tensor] = []
    for p in parts:
        p = p.reshape(-1)
        if kind == "topk":
            k = topk_k(p.numel(), ratio)
            idx = torch.topk(p.float().abs(), k, sorted=False).indices
            chunks += [as_bytes(idx.to(torch.int32)), as_bytes(p[idx].to(wd))]
        elif kind == "int8":
            pf = p.float()
            m = float(pf.abs().max())
            scale = m / 127.0 if m > 0 else 1.0
            q = torch.round(pf / scale).clamp_(-127, 127).to(torch.int8)
            chunks += [as_bytes(torch.tensor([scale], dtype=torch.float32)), as_bytes(q)]
        else:
            raise ValueError(f"unknown compression {kind!r}")
    return torch.cat(chunks)


def decode_push(
    payload: torch.Tensor, numels: list[int], wire_dtype: str, kind: str, ratio: float
) -> torch.Tensor:
    """Dense float32 gradient of the shard slice (concatenated partitions) from a push payload."""
    wd = TORCH_DTYPES[wire_dtype]
    if kind == "none":
        return payload.view(wd).float()
    wb = torch.empty((), dtype=wd).element_size()
    out = torch.zeros(sum(numels), dtype=torch.float32)
    pos, off = 0, 0
    for n in numels:
        if kind == "topk":
            k = topk_k(n, ratio)
            idx = view_as(payload[pos : pos + 4 * k], torch.int32).long()
            pos += 4 * k
            vals = view_as(payload[pos : pos + wb * k], wd).float()
            pos += wb * k
            out[off : off + n].index_copy_(0, idx, vals)
        else:  # int8
            scale = float(view_as(payload[pos : pos + 4], torch.float32)[0])
            pos += 4
            out[off : off + n] = payload[pos : pos + n].view(torch.int8).float() * scale
            pos += n
        off += n
    assert pos == payload.numel(), (pos, payload.numel())
    return out
