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
arbiter drives it from the wall clock, so both backends share one link model. `add` and `add_many`
only queue flows (list appends), so a caller can start thousands of flows at one instant cheaply;
the queue is folded into dense numpy arrays at the next `recompute` / `next_completion` /
`pop_completed`. The filling is vectorised: a recompute costs O(flows) per bottleneck level, and
callers coalesce all starts at one instant into one recompute. A finished flow's slot is
refilled from the end of the arrays, so removing d flows costs O(d); a sequence number keeps
the start order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

MAX_RES = 3  # a flow crosses at most: sender egress, receiver ingress, fabric
_REM, _AMT, _RATE, _CAP = 0, 1, 2, 3  # columns of FluidSystem._f
_DONE_TOL_S = 1e-9  # flows this close to done at the same instant complete together
_SAT_TOL = 1e-12  # a resource with less than this fraction of its capacity left is saturated
_SMALL = 48  # up to this many flows the filling runs in plain Python (faster than numpy calls)


class FluidSystem:
    """Flows over capacitated resources, rates max-min fair (see the module docstring)."""

    def __init__(self, capacities: Sequence[float], names: Sequence[str] | None = None) -> None:
        self._next_cache: float | None = None  # next_completion, until the flows or rates change
        cap = np.asarray(capacities, dtype=float)
        if cap.ndim != 1 or cap.size == 0:
            raise ValueError('"capacities" must be a non-empty list')
        if np.any(~np.isfinite(cap)) or np.any(cap <= 0):
            raise ValueError('"capacities" must be finite and > 0')
        if names is not None and len(names) != cap.size:
            raise ValueError(f'"names" must name every resource ({cap.size}), got {len(names)}')
        self.cap = cap
        self.cap_list = cap.tolist()
        self.names = list(names) if names is not None else [f"r{i}" for i in range(cap.size)]
        self.n = 0  # flows materialised in the arrays, stored densely in [0, n)
        size = 64
        self._res = np.full((size, MAX_RES), -1, dtype=np.int64)
        self._width = 1  # widest resource row seen
        self._ragged = False  # some row is shorter than _width (padded with -1)
        # per flow: amount left (as of time _t_rem), amount at start, rate, rate cap
        self._f = np.zeros((size, 4))
        self._f[:, _CAP] = np.inf
        self._t_rem = 0.0
        self._tdone = np.full(size, np.inf)  # completion time at the current rates
        self._key = np.empty(size, dtype=object)  # each flow's key
        self._seq = np.zeros(
            size, dtype=np.int64
        )  # start order (array slots are reused out of order)
        self._next_seq = 0
        # flows added but not yet folded into the arrays, in order: closed blocks
        # (resources array, amounts, keys, [(index in block, cap)]), then loose rows from `add`
        self._blocks: list[
            tuple[np.ndarray, list[float], list[Hashable], list[tuple[int, float]]]
        ] = []
        self._q_res: list[Sequence[int]] = []
        self._q_amt: list[float] = []
        self._q_key: list[Hashable] = []
        self._q_cap: list[tuple[int, float]] = []
        self._n_queued = 0
        self._n_capped = (
            0  # flows with a finite rate cap (the filling skips caps when there are none)
        )
        self._now = 0.0
        self._dirty = False
        self._carried_done = np.zeros(cap.size)  # amounts of completed flows, per resource

    # ------------------------------------------------------------------------------ flows
    @property
    def now(self) -> float:
        return self._now

    def __len__(self) -> int:
        return self.n + self._n_queued

    def add(
        self,
        now: float,
        resources: Sequence[int],
        amount: float,
        key: Hashable,
        cap: float = np.inf,
    ) -> None:
        """Start a flow of `amount` over `resources` at time `now` (rates are stale until
        recompute)."""
        if not 1 <= len(resources) <= MAX_RES:
            raise ValueError(f"a flow crosses 1..{MAX_RES} resources (got {len(resources)})")
        if not 0.0 <= amount < np.inf:  # also refuses NaN
            raise ValueError(f'"amount" must be finite and >= 0 (got {amount})')
        if not cap > 0.0:
            raise ValueError(f'"cap" must be > 0 (got {cap})')
        if now != self._now:
            self.advance(now)
        if cap != np.inf:
            self._q_cap.append((len(self._q_amt), cap))
        self._q_res.append(resources)
        self._q_amt.append(amount)
        self._q_key.append(key)
        self._n_queued += 1
        self._dirty = True

    def add_many(
        self,
        now: float,
        resources: np.ndarray,
        amounts: list[float],
        keys: list[Hashable],
        cap: float = np.inf,
    ) -> None:
        """Start len(keys) flows at `now` in one call, each with rate cap `cap`; `resources` is an
        int array, one row per flow (checked, like the amounts, when the flows are folded in)."""
        if not resources.shape[0] == len(amounts) == len(keys):
            raise ValueError("add_many needs one resource row, amount and key per flow")
        if now != self._now:
            self.advance(now)
        if self._q_amt:
            self._close_rows()
        if not cap > 0.0:
            raise ValueError(f'"cap" must be > 0 (got {cap})')
        caps = [] if cap == np.inf else [(i, cap) for i in range(len(keys))]
        self._blocks.append((resources, amounts, keys, caps))
        self._n_queued += len(keys)
        self._dirty = True

    def _close_rows(self) -> None:
        rows = self._q_res
        try:
            arr = np.array(rows, dtype=np.int64)
        except ValueError:  # flows crossing different numbers of resources
            arr = np.full((len(rows), MAX_RES), -1, dtype=np.int64)
            for i, r in enumerate(rows):
                arr[i, : len(r)] = r
        self._blocks.append((arr, self._q_amt, self._q_key, self._q_cap))
        self._q_res, self._q_amt, self._q_key, self._q_cap = [], [], [], []

    def _flush(self) -> None:
        """Fold queued flows into the arrays (they start at rate 0 until the next recompute)."""
        if not self._n_queued:
            return
        if self._q_amt:
            self._close_rows()
        blocks, self._blocks = self._blocks, []
        k, n = self._n_queued, self.n
        self._n_queued = 0
        while n + k > self._f.shape[0]:
            self._grow()
        arrs: list[np.ndarray] = []
        amts: list[float] = []
        keys: list[Hashable] = []
        capped: list[tuple[int, float]] = []
        widths = set()
        for a, am, ke, ca in blocks:
            if ca:
                capped += [(len(amts) + i, c) for i, c in ca]
            amts += am
            keys += ke
            arrs.append(a)
            widths.add(a.shape[-1] if a.ndim == 2 else -1)
        if not widths <= {1, 2, 3}:
            raise ValueError(
                f"a flow crosses 1..{MAX_RES} resources, given as a sequence of indices"
            )
        width = max(widths)
        if len(widths) > 1:
            arrs = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1) for a in arrs]
        arr = np.concatenate(arrs) if len(arrs) > 1 else arrs[0]
        if arr.min() < -1 or arr.max() >= self.cap.size or (arr[:, 0] < 0).any():
            raise ValueError(f"resource index out of range 0..{self.cap.size - 1}")
        amounts = np.array(amts, dtype=float)
        if not (amounts >= 0).all() or not np.isfinite(amounts).all():
            raise ValueError('"amount" must be finite and >= 0')
        if width > self._width:
            self._ragged = self._ragged or n > 0
            self._width = width
        elif width < self._width:
            self._ragged = True
        if not self._ragged and (arr < 0).any():
            self._ragged = True
        self._res[n : n + k, :width] = arr
        self._res[n : n + k, width:] = -1
        f = self._f[n : n + k]
        f[:, _REM] = (
            amounts  # new flows have rate 0 until the next recompute, so draining them is moot
        )
        f[:, _AMT] = amounts
        f[:, _RATE] = 0.0
        f[:, _CAP] = np.inf
        for i, c in capped:
            f[i, _CAP] = c
        self._n_capped += len(capped)
        self._tdone[n : n + k] = np.where(amounts > 0, np.inf, self._now)
        self._next_cache = None
        self._key[n : n + k] = np.fromiter(keys, dtype=object, count=k)
        self._seq[n : n + k] = np.arange(self._next_seq, self._next_seq + k)
        self._next_seq += k
        self.n = n + k

    def _grow(self) -> None:
        extra = self._f.shape[0]
        self._res = np.concatenate([self._res, np.full((extra, MAX_RES), -1, dtype=np.int64)])
        more = np.zeros((extra, 4))
        more[:, _CAP] = np.inf
        self._f = np.concatenate([self._f, more])
        self._tdone = np.concatenate([self._tdone, np.full(extra, np.inf)])
        self._key = np.concatenate([self._key, np.empty(extra, dtype=object)])
        self._seq = np.concatenate([self._seq, np.zeros(extra, dtype=np.int64)])

    def advance(self, now: float) -> None:
        """Move the clock to `now`; every flow drains at its current rate meanwhile (lazily: the
        amounts left are brought up to date when rates change or `carried` is read)."""
        dt = now - self._now
        if dt < 0:
            if dt < -1e-9:
                raise ValueError(f"time went backwards ({now} < {self._now})")
            return
        self._now = now

    def _drain(self) -> None:
        dt = self._now - self._t_rem
        if dt > 0 and self.n:
            f = self._f[: self.n]
            f[:, _REM] -= f[:, _RATE] * dt
        self._t_rem = self._now

    @property
    def carried(self) -> np.ndarray:
        """Amount each resource has carried so far (completed flows plus the drained part of active
        ones)."""
        out = self._carried_done.copy()
        n = self.n
        if n:
            f = self._f[:n]
            moved = f[:, _AMT] - (f[:, _REM] - f[:, _RATE] * (self._now - self._t_rem))
            res = self._res[:n]
            for k in range(MAX_RES):
                m = res[:, k] >= 0
                out += np.bincount(res[m, k], weights=moved[m], minlength=self.cap.size)
        return out

    # ----------------------------------------------------------------------------- rates
    def recompute(self) -> None:
        """Max-min fair rates by progressive filling, and each flow's completion time under them."""
        self._flush()
        self._dirty = False
        n = self.n
        if n == 0:
            return
        self._drain()
        if n <= _SMALL:
            rate = self._fill_small(n)
        else:
            rate = self._fill(n)
        f = self._f[:n]
        f[:, _RATE] = rate
        rem = np.maximum(f[:, _REM], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            self._tdone[:n] = self._now + np.where(
                rate > 0, rem / rate, np.where(rem <= 0, 0.0, np.inf)
            )
        self._next_cache = None

    def _fill_small(self, n: int) -> np.ndarray:
        """Progressive filling in plain Python: for a few flows numpy's per-call cost dominates."""
        rows = self._res[:n, : self._width].tolist()
        fcap = self._f[:n, _CAP].tolist() if self._n_capped else None
        return np.array(max_min_rates(rows, self.cap_list, fcap))

    def _fill(self, n: int) -> np.ndarray:
        """Progressive filling, vectorised over flows."""
        R = self.cap.size
        w = self._width
        res = self._res[:n, :w]
        # flattened (flow, resource) incidences
        if self._ragged:
            flow_of, col = np.nonzero(res >= 0)
            res_of = res[flow_of, col]
        else:
            res_of = res.ravel()
            flow_of = np.arange(n).repeat(w) if w > 1 else np.arange(n)
        cnt = np.bincount(res_of, minlength=R).astype(float)  # unfrozen flows per resource
        cap_left = self.cap.copy()
        tol = _SAT_TOL * self.cap
        f = self._f[:n]
        capped = self._n_capped > 0
        fcap = f[:, _CAP]
        rate = np.zeros(n)
        live = np.ones(n, dtype=bool)  # flows not frozen yet
        inc = np.ones(res_of.size, dtype=bool)  # incidences of live flows
        level = 0.0
        while True:
            used = cnt > 0
            d = float((cap_left[used] / cnt[used]).min())
            if capped:
                d = min(d, float(fcap[live].min()) - level)
            level += d
            cap_left -= d * cnt
            sat = used & (cap_left <= tol)
            frozen = flow_of[inc & sat[res_of]]
            if capped:  # (an infinite cap never binds; inf - level <= inf would say it does)
                at_cap = (
                    live & np.isfinite(fcap) & ((fcap - level) <= _SAT_TOL * np.maximum(fcap, 1.0))
                )
                frozen = np.concatenate([frozen, np.flatnonzero(at_cap)])
            if frozen.size == 0:  # numerical corner: freeze the tightest anyway
                frozen = np.flatnonzero(live)
            rate[frozen] = level
            live[frozen] = False
            if not live.any():
                break
            gone = inc & ~live[flow_of]
            cnt -= np.bincount(res_of[gone], minlength=R)
            inc &= ~gone
        return rate

    @property
    def dirty(self) -> bool:
        return self._dirty

    def next_completion(self) -> float:
        """Absolute time the next flow completes at the current rates (inf if none can)."""
        if self._n_queued:
            self._flush()
        elif self._next_cache is not None:
            return self._next_cache
        t = float(self._tdone[: self.n].min()) if self.n else np.inf
        self._next_cache = t
        return t

    def pop_completed(self, now: float) -> list[Hashable]:
        """Advance to `now` and remove the flows done by then (in start order). Rates go stale."""
        self._flush()
        self.advance(now)
        n = self.n
        if n == 0:
            return []
        is_done = self._tdone[:n] <= self._now + _DONE_TOL_S
        done = np.flatnonzero(is_done)
        if done.size == 0:
            return []
        if done.size > 1:
            done = done[np.argsort(self._seq[done])]  # in start order
        keys = self._key[done].tolist()
        res = self._res[done]
        amt = np.broadcast_to(self._f[done, _AMT][:, None], res.shape)
        m = res >= 0
        self._carried_done += np.bincount(res[m], weights=amt[m], minlength=self.cap.size)
        if self._n_capped:
            self._n_capped -= int(np.isfinite(self._f[done, _CAP]).sum())
        # keep the survivors in [0, k): the ones above k move into the holes below it
        k = n - done.size
        holes = done[done < k]
        if holes.size:
            movers = k + np.flatnonzero(~is_done[k:])
            for a in (self._res, self._f, self._tdone, self._key, self._seq):
                a[holes] = a[movers]
        self._key[k:n] = None  # let go of the finished flows' keys
        self.n = k
        self._next_cache = None
        self._dirty = True
        return keys

    def rates(self) -> dict[Hashable, float]:
        """Current rate of every flow, by key (queued flows: 0 until the next recompute)."""
        self._flush()
        order = np.argsort(self._seq[: self.n])
        return {self._key[i]: float(self._f[i, _RATE]) for i in order.tolist()}


def max_min_rates(
    rows: list[list[int]] | list[tuple[int, ...]],
    caps: list[float],
    flow_caps: list[float] | None = None,
) -> list[float]:
    """Max-min fair rates of flows crossing `rows` (resource indices; -1 = none) by progressive
    filling, in plain Python (the same steps as FluidSystem._fill: raise every unfrozen flow
    together until a resource saturates or a flow reaches its cap, freeze those, go on)."""
    n = len(rows)
    cnt: dict[int, int] = {}
    for row in rows:
        for r in row:
            if r >= 0:
                cnt[r] = cnt.get(r, 0) + 1
    cap_left = {r: float(caps[r]) for r in cnt}
    tol = {r: _SAT_TOL * v for r, v in cap_left.items()}
    rate = [0.0] * n
    live = list(range(n))
    level = 0.0
    while live:
        d = min((cap_left[r] / c for r, c in cnt.items() if c > 0), default=np.inf)
        if flow_caps is not None:
            d = min(d, min(flow_caps[i] for i in live) - level)
        level += d
        sat = set()
        for r, c in cnt.items():
            if c > 0:
                cap_left[r] -= d * c
                if cap_left[r] <= tol[r]:
                    sat.add(r)
        frozen = [
            i
            for i in live
            if any(r in sat for r in rows[i])
            or (
                flow_caps is not None
                and flow_caps[i] != np.inf
                and flow_caps[i] - level <= _SAT_TOL * max(flow_caps[i], 1.0)
            )
        ]
        if not frozen:  # numerical corner: freeze the tightest anyway
            frozen = live
        fz = set(frozen)
        for i in frozen:
            rate[i] = level
            for r in rows[i]:
                if r >= 0:
                    cnt[r] -= 1
        live = [i for i in live if i not in fz]
    return rate


class SmallFluid:
    """The same fluid model as `FluidSystem`, in plain Python, for a few dozen flows at most.

    psreal's link arbiter runs it on every message's start and end in real time: at that size a
    dict of flows costs a fraction of numpy's per-call overhead. The rates come from the same
    `max_min_rates`; a test checks both classes give the same completions.
    """

    def __init__(self, capacities: Sequence[float], names: Sequence[str] | None = None) -> None:
        caps = [float(c) for c in capacities]
        if not caps or any(not (0 < c < np.inf) for c in caps):
            raise ValueError('"capacities" must be a non-empty list of finite values > 0')
        self.caps = caps
        self.names = list(names) if names is not None else [f"r{i}" for i in range(len(caps))]
        self.flows: dict[Hashable, list] = {}  # key -> [resources, remaining, rate, cap, seq]
        self._seq = 0
        self._now = 0.0
        self._dirty = False

    def __len__(self) -> int:
        return len(self.flows)

    @property
    def dirty(self) -> bool:
        return self._dirty

    def add(
        self,
        now: float,
        resources: Sequence[int],
        amount: float,
        key: Hashable,
        cap: float = np.inf,
    ) -> None:
        self.advance(now)
        self.flows[key] = [tuple(resources), float(amount), 0.0, cap, self._seq]
        self._seq += 1
        self._dirty = True

    def advance(self, now: float) -> None:
        dt = now - self._now
        if dt > 0:
            for f in self.flows.values():
                f[1] -= f[2] * dt
            self._now = now
        elif dt < -1e-9:
            raise ValueError(f"time went backwards ({now} < {self._now})")

    def recompute(self) -> None:
        self._dirty = False
        fl = list(self.flows.values())
        if not fl:
            return
        capped = any(f[3] != np.inf for f in fl)
        rates = max_min_rates([f[0] for f in fl], self.caps, [f[3] for f in fl] if capped else None)
        for f, r in zip(fl, rates, strict=True):
            f[2] = r

    def next_completion(self) -> float:
        best = np.inf
        for f in self.flows.values():
            rem, rate = max(f[1], 0.0), f[2]
            t = rem / rate if rate > 0 else (0.0 if rem <= 0 else np.inf)
            best = min(best, t)
        return self._now + best

    def pop_completed(self, now: float) -> list[Hashable]:
        self.advance(now)
        done = []
        for key, f in self.flows.items():
            rem, rate = f[1], f[2]
            left = rem / rate if rate > 0 else (0.0 if rem <= 0 else np.inf)
            if left <= _DONE_TOL_S:
                done.append((f[4], key))
        done.sort()
        for _, key in done:
            del self.flows[key]
        if done:
            self._dirty = True
        return [k for _, k in done]
