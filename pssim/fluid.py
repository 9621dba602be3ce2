"""Max-min fair fluid sharing of resources among flows: the link and device model of both backends.

A *resource* has a capacity (bytes/s for a NIC direction or the fabric; work-seconds per second for
a device or a core). A *flow* crosses one to three resources and carries an amount (bytes, or
seconds of standalone work); it may also have a rate cap. At every instant the rates are the
max-min fair allocation (progressive filling, Bertsekas & Gallager, "Data Networks", sec. 6.5.2):
all flows grow together until a resource saturates or a flow reaches its cap, those flows freeze,
and the rest keep growing. Rates change only when a flow starts or ends, so between such events
every flow drains linearly and the next completion time is exact.

The class is time-agnostic: callers pass `now`. pssim drives it from SimPy time; psreal's link
arbiter drives it from the wall clock, so both backends share one link model. Arrays are kept
dense (swap-remove) and the filling is vectorised with numpy: a recompute costs O(flows) per
bottleneck level, and callers coalesce all starts at one instant into one recompute.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

MAX_RES = 3  # a flow crosses at most: sender egress, receiver ingress, fabric
_DONE_TOL_S = 1e-9  # flows this close to done at the same instant complete together


class FluidSystem:
    def __init__(self, capacities: Sequence[float], names: Sequence[str] | None = None) -> None:
        cap = np.asarray(capacities, dtype=float)
        if cap.ndim != 1 or cap.size == 0:
            raise ValueError('"capacities" must be a non-empty list')
        if np.any(~np.isfinite(cap)) or np.any(cap <= 0):
            raise ValueError('"capacities" must be finite and > 0')
        self.cap = cap
        self.names = list(names) if names is not None else [f"r{i}" for i in range(cap.size)]
        self.n = 0  # active flows, stored densely in [0, n)
        size = 64
        self._res = np.full((size, MAX_RES), -1, dtype=np.int64)
        self._rem = np.zeros(size)
        self._rate = np.zeros(size)
        self._flowcap = np.full(size, np.inf)
        self._keys: list[Hashable] = []
        self._now = 0.0
        self._dirty = False
        self.carried = np.zeros(cap.size)  # amount carried by each resource so far (for utilisation)

    # ------------------------------------------------------------------------------ flows
    @property
    def now(self) -> float:
        return self._now

    def __len__(self) -> int:
        return self.n

    def add(self, now: float, resources: Sequence[int], amount: float, key: Hashable, cap: float = np.inf) -> None:
        """Start a flow of `amount` over `resources` at time `now` (rates are stale until recompute)."""
        if not 1 <= len(resources) <= MAX_RES:
            raise ValueError(f"a flow crosses 1..{MAX_RES} resources (got {len(resources)})")
        if amount < 0 or not np.isfinite(amount):
            raise ValueError(f'"amount" must be finite and >= 0 (got {amount})')
        self.advance(now)
        if self.n == self._rem.size:
            self._grow()
        i = self.n
        self._res[i, :] = -1
        self._res[i, : len(resources)] = resources
        self._rem[i] = amount
        self._rate[i] = 0.0
        self._flowcap[i] = cap
        self._keys.append(key)
        self.n += 1
        self._dirty = True

    def _grow(self) -> None:
        size = self._rem.size * 2
        self._res = np.concatenate([self._res, np.full((size - self._res.shape[0], MAX_RES), -1, dtype=np.int64)])
        self._rem = np.concatenate([self._rem, np.zeros(size - self._rem.size)])
        self._rate = np.concatenate([self._rate, np.zeros(size - self._rate.size)])
        self._flowcap = np.concatenate([self._flowcap, np.full(size - self._flowcap.size, np.inf)])

    def advance(self, now: float) -> None:
        """Drain every flow at its current rate up to `now`."""
        dt = now - self._now
        if dt < 0:
            if dt < -1e-9:
                raise ValueError(f"time went backwards ({now} < {self._now})")
            return
        if dt > 0 and self.n:
            n = self.n
            moved = self._rate[:n] * dt
            self._rem[:n] -= moved
            res = self._res[:n]
            for k in range(MAX_RES):
                col = res[:, k]
                m = col >= 0
                if m.any():
                    self.carried += np.bincount(col[m], weights=moved[m], minlength=self.cap.size)
        self._now = now

    # ----------------------------------------------------------------------------- rates
    def recompute(self) -> None:
        """Max-min fair rates by progressive filling."""
        self._dirty = False
        n = self.n
        if n == 0:
            return
        res = self._res[:n]
        fcap = self._flowcap[:n]
        rate = np.zeros(n)
        unfrozen = np.ones(n, dtype=bool)
        cap_left = self.cap.astype(float).copy()
        level = 0.0
        R = self.cap.size
        while True:
            idx = res[unfrozen]
            idx = idx[idx >= 0]
            cnt = np.bincount(idx, minlength=R)
            used = cnt > 0
            d = np.inf
            if used.any():
                d = float(np.min(cap_left[used] / cnt[used]))
            d_cap = float(np.min(fcap[unfrozen])) - level
            d = min(d, d_cap)
            level += d
            cap_left -= d * cnt
            tol = 1e-12 * self.cap
            sat = used & (cap_left <= tol)
            freeze = unfrozen & ((fcap - level) <= 1e-12 * np.maximum(fcap, 1.0))
            if sat.any():
                hit = sat[np.where(res >= 0, res, 0)] & (res >= 0)
                freeze |= unfrozen & hit.any(axis=1)
            if not freeze.any():  # numerical corner: freeze the tightest anyway
                freeze = unfrozen.copy()
            rate[freeze] = level
            unfrozen &= ~freeze
            if not unfrozen.any():
                break
        self._rate[:n] = rate

    @property
    def dirty(self) -> bool:
        return self._dirty

    def next_completion(self) -> float:
        """Absolute time the next flow completes at the current rates (inf if none can)."""
        n = self.n
        if n == 0:
            return np.inf
        rate = self._rate[:n]
        rem = np.maximum(self._rem[:n], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(rate > 0, rem / rate, np.where(rem <= 0, 0.0, np.inf))
        return self._now + float(t.min())

    def pop_completed(self, now: float) -> list[Hashable]:
        """Advance to `now` and remove the flows done by then (in start order). Rates go stale."""
        self.advance(now)
        n = self.n
        if n == 0:
            return []
        rate = self._rate[:n]
        rem = self._rem[:n]
        with np.errstate(divide="ignore", invalid="ignore"):
            left_s = np.where(rate > 0, rem / rate, np.where(rem <= 0, 0.0, np.inf))
        done = np.flatnonzero(left_s <= _DONE_TOL_S)
        if done.size == 0:
            return []
        keys = [self._keys[i] for i in done]
        keep = np.ones(n, dtype=bool)
        keep[done] = False
        k = int(keep.sum())
        self._res[:k] = self._res[:n][keep]
        self._rem[:k] = rem[keep]
        self._rate[:k] = rate[keep]
        self._flowcap[:k] = self._flowcap[:n][keep]
        self._keys = [key for key, kp in zip(self._keys, keep, strict=True) if kp]
        self.n = k
        self._dirty = True
        return keys

    def rates(self) -> dict[Hashable, float]:
        return {self._keys[i]: float(self._rate[i]) for i in range(self.n)}
