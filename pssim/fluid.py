"""Max-min fair fluid sharing of resources among flows: the link and device model of both backends.

A *resource* has a capacity (bytes/s for a NIC direction or the fabric; work-seconds per second for
a device or a core). A *flow* crosses one to three resources and carries an amount (bytes, or
seconds of standalone work); it may also have a rate cap. At every instant the rates are the
max-min fair allocation (progressive filling, Bertsekas & Gallager, "Data Networks", 2nd ed.,
sec. 6.5.2): all flows grow together until a resource saturates or a flow reaches its cap, those
flows freeze, and the rest keep growing. Rates change only when a flow starts or ends, so between
such events every flow drains linearly and the next completion time is exact. Flows that finish
within `_DONE_TOL_S` of each other complete together, reported in the order they were added.

The class is time-agnostic: callers pass `now`. pssim drives it from SimPy time; psreal's link
arbiter drives it from the wall clock, so both backends share one link model. `add` only queues
the flow (a few list appends), so a caller can start thousands of flows at one instant cheaply;
the queue is folded into dense numpy arrays at the next `recompute` / `next_completion` /
`pop_completed`. The filling is vectorised: a recompute costs O(flows) per bottleneck level, and
callers coalesce all starts at one instant into one recompute.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

MAX_RES = 3  # a flow crosses at most: sender egress, receiver ingress, fabric
_DONE_TOL_S = 1e-9  # flows this close to done at the same instant complete together
_SAT_TOL = 1e-12  # a resource with less than this fraction of its capacity left is saturated


class FluidSystem:
    """Flows over capacitated resources, rates max-min fair (see the module docstring)."""

    def __init__(self, capacities: Sequence[float], names: Sequence[str] | None = None) -> None:
        cap = np.asarray(capacities, dtype=float)
        if cap.ndim != 1 or cap.size == 0:
            raise ValueError('"capacities" must be a non-empty list')
        if np.any(~np.isfinite(cap)) or np.any(cap <= 0):
            raise ValueError('"capacities" must be finite and > 0')
        if names is not None and len(names) != cap.size:
            raise ValueError(f'"names" must name every resource ({cap.size}), got {len(names)}')
        self.cap = cap
        self.names = list(names) if names is not None else [f"r{i}" for i in range(cap.size)]
        self.n = 0  # flows materialised in the arrays, stored densely in [0, n) in start order
        size = 64
        self._res = np.full((size, MAX_RES), -1, dtype=np.int64)
        self._rem = np.zeros(size)  # amount left
        self._amt = np.zeros(size)  # amount at start (for `carried`)
        self._rate = np.zeros(size)
        self._flowcap = np.full(size, np.inf)
        self._kid = np.zeros(size, dtype=np.int64)  # key id -> self._keys
        self._keys: dict[int, Hashable] = {}
        self._next_kid = 0
        self._queued: list[tuple[Sequence[int], float, Hashable, float]] = []  # added, not yet in the arrays
        self._n_capped = 0  # flows with a finite rate cap (the filling skips caps when there are none)
        self._now = 0.0
        self._dirty = False
        self._carried_done = np.zeros(cap.size)  # amounts of completed flows, per resource

    # ------------------------------------------------------------------------------ flows
    @property
    def now(self) -> float:
        return self._now

    def __len__(self) -> int:
        return self.n + len(self._queued)

    def add(self, now: float, resources: Sequence[int], amount: float, key: Hashable, cap: float = np.inf) -> None:
        """Start a flow of `amount` over `resources` at time `now` (rates are stale until recompute)."""
        if not 1 <= len(resources) <= MAX_RES:
            raise ValueError(f"a flow crosses 1..{MAX_RES} resources (got {len(resources)})")
        if not 0.0 <= amount < np.inf:  # also refuses NaN
            raise ValueError(f'"amount" must be finite and >= 0 (got {amount})')
        if not cap > 0.0:
            raise ValueError(f'"cap" must be > 0 (got {cap})')
        if now != self._now:
            self.advance(now)
        self._queued.append((resources, amount, key, cap))
        self._dirty = True

    def _flush(self) -> None:
        """Move queued flows into the arrays (they start at rate 0 until the next recompute)."""
        q = self._queued
        if not q:
            return
        self._queued = []
        k, n = len(q), self.n
        while n + k > self._rem.size:
            self._grow()
        rows = [f[0] for f in q]
        try:
            arr = np.array(rows, dtype=np.int64)
        except ValueError:  # flows crossing different numbers of resources
            arr = np.full((k, MAX_RES), -1, dtype=np.int64)
            for i, r in enumerate(rows):
                arr[i, : len(r)] = r
        if arr.ndim != 2:
            raise ValueError("a flow's resources must be a sequence of resource indices")
        if arr.min() < -1 or arr.max() >= self.cap.size or (arr[:, 0] < 0).any():
            raise ValueError(f"resource index out of range 0..{self.cap.size - 1}")
        width = arr.shape[1]
        self._res[n : n + k, :width] = arr
        self._res[n : n + k, width:] = -1
        amounts = np.fromiter((f[1] for f in q), dtype=float, count=k)
        self._rem[n : n + k] = amounts
        self._amt[n : n + k] = amounts
        self._rate[n : n + k] = 0.0
        caps = np.fromiter((f[3] for f in q), dtype=float, count=k)
        self._flowcap[n : n + k] = caps
        self._n_capped += int(np.isfinite(caps).sum())
        kid0 = self._next_kid
        self._kid[n : n + k] = np.arange(kid0, kid0 + k)
        self._keys.update(zip(range(kid0, kid0 + k), (f[2] for f in q), strict=True))
        self._next_kid = kid0 + k
        self.n = n + k

    def _grow(self) -> None:
        extra = self._rem.size
        self._res = np.concatenate([self._res, np.full((extra, MAX_RES), -1, dtype=np.int64)])
        self._rem = np.concatenate([self._rem, np.zeros(extra)])
        self._amt = np.concatenate([self._amt, np.zeros(extra)])
        self._rate = np.concatenate([self._rate, np.zeros(extra)])
        self._flowcap = np.concatenate([self._flowcap, np.full(extra, np.inf)])
        self._kid = np.concatenate([self._kid, np.zeros(extra, dtype=np.int64)])

    def advance(self, now: float) -> None:
        """Drain every flow at its current rate up to `now` (queued flows have rate 0)."""
        dt = now - self._now
        if dt < 0:
            if dt < -1e-9:
                raise ValueError(f"time went backwards ({now} < {self._now})")
            return
        if dt > 0 and self.n:
            n = self.n
            self._rem[:n] -= self._rate[:n] * dt
        self._now = now

    @property
    def carried(self) -> np.ndarray:
        """Amount each resource has carried so far (completed flows plus the drained part of active ones)."""
        out = self._carried_done.copy()
        n = self.n
        if n:
            moved = self._amt[:n] - self._rem[:n]
            res = self._res[:n]
            for k in range(MAX_RES):
                m = res[:, k] >= 0
                out += np.bincount(res[m, k], weights=moved[m], minlength=self.cap.size)
        return out

    # ----------------------------------------------------------------------------- rates
    def recompute(self) -> None:
        """Max-min fair rates by progressive filling."""
        self._flush()
        self._dirty = False
        n = self.n
        if n == 0:
            return
        R = self.cap.size
        res = self._res[:n]
        # flattened (flow, resource) incidences of the active flows
        flow_of, col = np.nonzero(res >= 0)
        res_of = res[flow_of, col]
        cnt = np.bincount(res_of, minlength=R).astype(float)  # unfrozen flows per resource
        cap_left = self.cap.copy()
        tol = _SAT_TOL * self.cap
        fcap = self._flowcap[:n]
        capped = self._n_capped > 0
        rate = np.zeros(n)
        unfrozen = np.ones(n, dtype=bool)
        inc_live = np.ones(flow_of.size, dtype=bool)
        level = 0.0
        while True:
            used = cnt > 0
            d = np.inf
            if used.any():
                d = float(np.min(cap_left[used] / cnt[used]))
            if capped:
                d = min(d, float(np.min(fcap[unfrozen])) - level)
            level += d
            cap_left -= d * cnt
            sat = used & (cap_left <= tol)
            freeze = np.zeros(n, dtype=bool)
            if sat.any():
                freeze[flow_of[inc_live & sat[res_of]]] = True
            if capped:  # (an infinite cap never binds; inf - level <= inf would say it does)
                freeze |= unfrozen & np.isfinite(fcap) & ((fcap - level) <= _SAT_TOL * np.maximum(fcap, 1.0))
            if not freeze.any():  # numerical corner: freeze the tightest anyway
                freeze = unfrozen.copy()
            rate[freeze] = level
            unfrozen &= ~freeze
            if not unfrozen.any():
                break
            gone = inc_live & freeze[flow_of]
            cnt -= np.bincount(res_of[gone], minlength=R)
            inc_live &= ~gone
        self._rate[:n] = rate

    @property
    def dirty(self) -> bool:
        return self._dirty

    def _left_s(self) -> np.ndarray:
        n = self.n
        rate = self._rate[:n]
        rem = np.maximum(self._rem[:n], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rate > 0, rem / rate, np.where(rem <= 0, 0.0, np.inf))

    def next_completion(self) -> float:
        """Absolute time the next flow completes at the current rates (inf if none can)."""
        self._flush()
        if self.n == 0:
            return np.inf
        return self._now + float(self._left_s().min())

    def pop_completed(self, now: float) -> list[Hashable]:
        """Advance to `now` and remove the flows done by then (in start order). Rates go stale."""
        self._flush()
        self.advance(now)
        n = self.n
        if n == 0:
            return []
        done = np.flatnonzero(self._left_s() <= _DONE_TOL_S)
        if done.size == 0:
            return []
        keys = [self._keys.pop(k) for k in self._kid[done].tolist()]
        res = self._res[done]
        for k in range(MAX_RES):
            m = res[:, k] >= 0
            np.add.at(self._carried_done, res[m, k], self._amt[done][m])
        self._n_capped -= int(np.isfinite(self._flowcap[done]).sum())
        keep = np.ones(n, dtype=bool)
        keep[done] = False
        k = n - done.size
        for a in (self._res, self._rem, self._amt, self._rate, self._flowcap, self._kid):
            a[:k] = a[:n][keep]
        self.n = k
        self._dirty = True
        return keys

    def rates(self) -> dict[Hashable, float]:
        """Current rate of every flow, by key (queued flows: 0 until the next recompute)."""
        self._flush()
        return {self._keys[int(self._kid[i])]: float(self._rate[i]) for i in range(self.n)}
