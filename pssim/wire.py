"""What crosses the wire: message kinds and their sizes in bytes, shared by both backends.

Every message is a fixed control header (`HEADER_BYTES`) followed by a payload. Pushes carry a
shard's gradient, encoded partition by partition:

- none:  each element in `wire_dtype`;
- topk:  per partition the k = ceil(ratio * n) largest-magnitude elements, as an int32 index and
  a `wire_dtype` value each;
- int8:  each element as int8 plus one float32 scale per partition (symmetric, max-abs scaling).

Pull replies carry the shard's parameters dense in `wire_dtype`; pull requests and LEAVE (a
worker that crashed for good is taken out of the shard's sync rule) carry no payload.
Pipeline activations and their gradients are dense in `wire_dtype`. psreal's codec produces
exactly these sizes (a test checks it), so simulated and real bytes agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from math import ceil

from .workload import DTYPE_BYTES

HEADER_BYTES = 64  # 8 int64 fields: kind, sender, step, seq, version, payload bytes, aux, aux2


class Kind(IntEnum):
    """A message's kind (header field 0)."""

    PULL = 1  # a worker asks a shard for its parameters
    REPLY = 2  # a shard's parameters
    PUSH = 3  # a worker's gradient
    ACT = 4  # a pipeline stage's activations, to the next stage
    ACT_GRAD = 5  # their gradients, back to the previous stage
    STOP = 6  # a receiving thread's end (psreal)
    LEAVE = 7  # a worker that crashed for good leaves a shard's sync rule


PULL, REPLY, PUSH, ACT, ACT_GRAD, STOP, LEAVE = tuple(Kind)


def topk_k(numel: int, ratio: float) -> int:
    return max(1, min(numel, ceil(ratio * numel - 1e-9)))


def push_payload_bytes(
    part_numels: Iterable[int], wire_dtype: str, compression: str, ratio: float
) -> int:
    wb = DTYPE_BYTES[wire_dtype]
    parts = list(part_numels)
    if compression == "none":
        return sum(parts) * wb
    if compression == "topk":
        return sum(topk_k(n, ratio) * (4 + wb) for n in parts)
    if compression == "int8":
        return sum(parts) + 4 * len(parts)
    raise ValueError(f"unknown compression {compression!r}")


def dense_payload_bytes(numel: int, wire_dtype: str) -> int:
    return numel * DTYPE_BYTES[wire_dtype]


def message_bytes(payload: int) -> int:
    return HEADER_BYTES + payload
