"""The simulator's messages, as named records. Each starts with what the network needs (see
`pssim.sim.resources.Message`): `delay`, the time from its last byte to its delivery, and
`deliver`, the receiver's function the network calls with the message when it arrives.
`kind` is the wire's message kind (`pssim.wire.Kind`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class PullRequest(NamedTuple):
    """A worker process asks a shard for its parameters for the step it is in. A worker has one
    pull per shard outstanding, so one record per worker and shard serves every step: the step
    is the worker's current one (`step`)."""

    delay: float
    deliver: Callable[[Any], None]
    kind: int
    proc: int
    worker: Any  # pssim.sim.model.Worker

    @property
    def step(self) -> int:
        return self.worker.step


class Push(NamedTuple):
    """A worker process's gradient of `step` for a shard; `version_read` is the version of the
    parameters it was computed on. The shard notes when it was delivered
    (`ServerShard.push_arrivals`)."""

    delay: float
    deliver: Callable[[Any], None]
    kind: int
    proc: int
    step: int
    version_read: int
    nbytes: int
    worker: Any  # pssim.sim.model.Worker: told when its push is through


class Leave(NamedTuple):
    """A worker process that crashed for good leaves a shard's sync rule."""

    delay: float
    deliver: Callable[[Any], None]
    kind: int
    proc: int


class Reply(NamedTuple):
    """A shard's parameters, `version`, for a pull the sync rule held `wait_s`."""

    delay: float
    deliver: Callable[[Any], None]
    shard: int
    version: int
    wait_s: float


class Activation(NamedTuple):
    """A pipeline stage's activations (kind ACT) or their gradients (ACT_GRAD) of one
    microbatch of `step`, to the next or the previous stage."""

    delay: float
    deliver: Callable[[Any], None]
    kind: int
    step: int
    microbatch: int
