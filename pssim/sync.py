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
    """Largest staleness a gradient can have on a shard with `pushers` worker processes pushing to it."""
    if mode == "bsp":
        return 0
    if mode == "ssp":
        assert staleness is not None
        return (pushers - 1) * (2 * staleness + 1)
    return None
