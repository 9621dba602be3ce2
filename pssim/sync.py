"""The synchronisation rules of DESIGN.md section 4, as pure functions both backends call.

A shard's *version* counts the updates applied to it. A worker's *clock* at a shard counts the
gradients the shard has received from it (its completed steps). Pull requests for step c are
answered when `pull_ready` says so; until then the shard holds them.

- bsp: gradients of clock c are summed and applied once all W arrived (one update per clock), and
  a pull for step c waits for version c. Staleness is always 0.
- ssp(s): gradients are applied on arrival; a pull for step c waits until every worker's clock at
  the shard is >= c - s. A gradient of step c can be applied after at most (W-1)(2s+1) updates
  from others since its read: others' steps in [c-s, c+s] (see docs/metrics.md).
- asp: applied on arrival, pulls never wait, staleness unbounded.
"""

from __future__ import annotations


def applies_on_arrival(mode: str) -> bool:
    return mode != "bsp"


def pull_ready(mode: str, bound: int | None, step: int, version: int, min_clock: int) -> bool:
    if mode == "bsp":
        return version >= step
    if mode == "ssp":
        assert bound is not None
        return min_clock >= step - bound
    return True


def staleness_bound(mode: str, staleness: int | None, pushers: int) -> int | None:
    """Largest staleness a gradient can have on a shard with `pushers` worker processes pushing to
    it."""
    if mode == "bsp":
        return 0
    if mode == "ssp":
        assert staleness is not None
        return (pushers - 1) * (2 * staleness + 1)
    return None


class ShardSync:
    """What the sync rule looks at on one shard, for both backends: its version, each pusher's
    clock (gradients received from it), the bsp clocks being summed, and the pushers that left.

    A worker that crashed for good (LEAVE) is taken out of the rule: ssp stops waiting for its
    clock, and a bsp clock then needs the gradients of the pushers still in and of those that left
    after pushing it (`needed`).
    """

    def __init__(self, mode: str, bound: int | None, pushers: list[int]) -> None:
        self.mode, self.bound = mode, bound
        self.version = 0
        self.clocks = {p: 0 for p in pushers}  # pusher still in -> gradients received from it
        self.left: list[int] = []  # gradients received from each pusher that left
        self.bsp_count: dict[int, int] = {}  # bsp clock -> gradients summed so far
        # ssp asks for the lowest clock: a histogram keeps it O(1) per push
        self._hist: dict[int, int] | None = {0: len(pushers)} if mode == "ssp" else None
        self.min_clock = 0

    def ready(self, step: int) -> bool:
        """Whether a pull for `step` may be answered now."""
        return pull_ready(self.mode, self.bound, step, self.version, self.min_clock)

    def split_ready(self, held: list[tuple[int, int, float]]) -> tuple[list, list]:
        """Held pulls (proc, step, time held) split into those the rule now allows and the rest."""
        ready: list[tuple[int, int, float]] = []
        still: list[tuple[int, int, float]] = []
        for q in held:
            (ready if self.ready(q[1]) else still).append(q)
        return ready, still

    def needed(self, step: int) -> int:
        """Gradients that complete bsp clock `step`."""
        if not self.left:
            return len(self.clocks)
        return len(self.clocks) + sum(1 for c in self.left if c > step)

    def push(self, proc: int, step: int) -> bool:
        """A gradient of `step` from `proc` arrived. bsp: it is summed, and True says it completes
        the clock (the caller applies the update, then calls `updated`). ssp/asp: it is applied
        now (version + 1); False."""
        c = self.clocks[proc]
        self.clocks[proc] = c + 1
        h = self._hist
        if h is not None:
            self._drop(c)
            h[c + 1] = h.get(c + 1, 0) + 1
            while self.min_clock not in h:
                self.min_clock += 1
        if self.mode == "bsp":
            n = self.bsp_count.get(step, 0) + 1
            if n == self.needed(step):
                self.bsp_count.pop(step, None)
                return True
            self.bsp_count[step] = n
            return False
        self.version += 1
        return False

    def _drop(self, clock: int) -> None:
        h = self._hist
        h[clock] -= 1  # type: ignore[index]
        if not h[clock]:  # type: ignore[index]
            del h[clock]  # type: ignore[union-attr]

    def updated(self) -> None:
        """bsp: the clock's summed gradient has been applied."""
        self.version += 1

    def leave(self, proc: int) -> tuple[int, list[int]]:
        """Take pusher `proc` out of the rule; returns how many gradients it had pushed and the
        bsp clocks this completes (the caller applies one update for each, calling `updated`)."""
        c = self.clocks.pop(proc)
        self.left.append(c)
        h = self._hist
        if h is not None:
            self._drop(c)
            while h and self.min_clock not in h:
                self.min_clock += 1
        done = [k for k, n in self.bsp_count.items() if n == self.needed(k)]
        for k in done:
            del self.bsp_count[k]
        return c, done
