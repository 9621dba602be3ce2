"""The shard protocol: how one PS shard handles PULL, PUSH and LEAVE, as one state machine that
both backends execute (the simulator's `pssim.sim.model.ServerShard`, psreal's
`psreal.server.ServerRole`).

The machine is pure: it holds no time and does no work. Its owner takes messages in delivery
order, one at a time, asks it what each one leads to and does the work (decoding, the optimiser,
encoding a reply) that takes time in its own backend:

- PUSH (`push`): the gradient of `step` from worker process `proc` is summed into the clock's
  sum (bsp) or applied at once (ssp/asp: version + 1). Under bsp the last gradient of a clock
  makes an update due: the owner applies the summed gradient, then calls `updated` (version + 1).
- PULL for `step` (`pull_ready`): answered now if the sync rule allows (`pssim.sync.pull_ready`),
  else held (`hold`) with the time it was held, until `release` hands it back with the others
  the rule now allows. A reply carries the current version, packed once per version: the owner
  encodes when `needs_encoding` says so and then calls `encoded`.
- LEAVE (`leave`): a worker that crashed for good is taken out of the sync rule; the bsp clocks
  it completes make one update each, and the gradients it will not push are not expected.

The shard has applied everything once `drained` (every expected gradient counted by
`count_applied`). `pssim.sync.ShardSync` holds the rule's state (version, clocks).
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from .sync import ShardSync


class HeldPull(NamedTuple):
    """A pull the sync rule holds: from worker process `proc`, for `step`, since `held_at_s`."""

    proc: int
    step: int
    held_at_s: float


class ShardProtocol:
    """One shard's protocol state (see the module doc). `pushers`: the worker processes that push
    to it; `steps`: how many steps each runs."""

    def __init__(self, mode: str, bound: int | None, pushers: list[int], steps: int) -> None:
        self.sync = ShardSync(mode, bound, pushers)
        self.steps = steps
        # held pulls by step, each with its place in the order they were held; pull_ready is
        # monotone in the step, so the held pulls that are ready are those of the lowest steps
        # (a heap of the steps): finding them costs what they are, not what is held
        self._held: dict[int, list[tuple[int, HeldPull]]] = {}
        self._held_steps: list[int] = []
        self._n_held = 0
        self.encoded_version = -1  # the version whose reply is packed
        self.expected = len(pushers) * steps  # gradients it will apply
        self.applied = 0

    @property
    def version(self) -> int:
        """Updates applied so far."""
        return self.sync.version

    @property
    def drained(self) -> bool:
        """Every gradient it expects has been applied."""
        return self.applied == self.expected

    # ------------------------------------------------------------------------------ PULL
    def pull_ready(self, step: int) -> bool:
        """Whether a pull for `step` may be answered now."""
        return self.sync.ready(step)

    def hold(self, proc: int, step: int, now_s: float) -> None:
        """The sync rule holds the pull of `proc` for `step` from `now_s` on."""
        bucket = self._held.get(step)
        if bucket is None:
            bucket = self._held[step] = []
            heapq.heappush(self._held_steps, step)
        bucket.append((self._n_held, HeldPull(proc, step, now_s)))
        self._n_held += 1

    @property
    def held(self) -> list[HeldPull]:
        """The pulls held now, in the order they were held."""
        return [q for _, q in sorted(x for b in self._held.values() for x in b)]

    def held_ready(self) -> bool:
        """Whether a held pull is ready now (the one of the lowest step is)."""
        return bool(self._held_steps) and self.sync.ready(self._held_steps[0])

    def release(self) -> list[HeldPull]:
        """The held pulls the sync rule now allows, in the order they were held; the rest stay."""
        steps, ready = self._held_steps, self.sync.ready
        if not steps or not ready(steps[0]):
            return []
        out = self._held.pop(heapq.heappop(steps))
        if steps and ready(steps[0]):
            while steps and ready(steps[0]):
                out += self._held.pop(heapq.heappop(steps))
            out.sort()
        return [q for _, q in out]

    def needs_encoding(self) -> bool:
        """Whether a reply needs the current version packed first (once per version)."""
        return self.encoded_version != self.sync.version

    def encoded(self) -> None:
        """The current version is packed: replies until the next update reuse it."""
        self.encoded_version = self.sync.version

    # ------------------------------------------------------------------------------ PUSH
    def push(self, proc: int, step: int) -> bool:
        """A gradient of `step` from `proc`: True when it completes a bsp clock (an update is
        due: apply it, then call `updated`); under ssp/asp it is applied now (version + 1)."""
        return self.sync.push(proc, step)

    def updated(self) -> None:
        """bsp: the clock's summed gradient has been applied (version + 1)."""
        self.sync.updated()

    def count_applied(self, n: int = 1) -> None:
        """`n` more gradients have been summed or applied."""
        self.applied += n

    # ----------------------------------------------------------------------------- LEAVE
    def leave(self, proc: int) -> list[int]:
        """Take `proc` out of the sync rule; returns the bsp clocks this completes (one update
        due for each). The gradients it will not push are no longer expected."""
        pushed, complete = self.sync.leave(proc)
        self.expected -= self.steps - pushed
        return complete
