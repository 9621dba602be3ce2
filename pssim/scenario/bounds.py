"""The bounds of every number of the scenario format, and the Field helpers that state them.

Every number of the format has bounds: generous ones no real scenario reaches, that keep both
backends' arithmetic finite and exact (the simulator's clock, psreal's sleeps, torch's float32
optimiser arguments and 64-bit seeds) and what they allocate within memory. Each field's
description states its bound (`_bounded`, `_count`), so docs/scenarios.md shows it;
pssim.scenario.estimates adds the limits on what several fields make together (memory, simulator
events, simulated time). This module imports nothing of the scenario package.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

# more partitions than this make planning slow and say nothing new: real PS systems cut at ~MBs
MAX_PARTITIONS = 100_000
# a typo like `layers: 1200000` must be refused, not make validation build a million layers
MAX_LAYERS = 10_000
MAX_SEED = 2**32 - 1  # psreal seeds torch with seed * 1_000_003 + ..., which must fit 64 bits
MAX_DIM = 10_000_000  # a layer width, d_model or vocabulary size
MAX_SEQ_LEN = 1_000_000
MAX_BATCH = 10_000_000
MAX_STEPS = 10_000_000
MAX_SAMPLES = 100_000_000  # each worker's synthetic data set, which psreal holds in memory
MAX_WORKERS = 100_000  # one process each in psreal
MAX_SERVERS = 10_000  # one process each in psreal
MAX_MICROBATCHES = 10_000
MAX_FAULTS = 1_000
MAX_STEP_TIME_S = 1e5  # about 28 hours per step
MAX_RESTART_S = 1e6  # about 12 days
MAX_SLOWDOWN = 1e3
MAX_JITTER_CV = 10.0
MIN_GBPS, MAX_GBPS, MAX_FABRIC_GBPS = 1e-6, 1e6, 1e9  # 1 kbit/s .. 1 Pbit/s (fabric 1 Ebit/s)
MAX_LATENCY_US = 1e7  # 10 s one way
# a latency is 0 or at least 1 ns: the simulator delivers a message `latency` after its last byte,
# and a latency below the clock's resolution (2 ns from 2^24 s on) would deliver it at the very
# instant it was sent, which its grouping of deliveries by instant does not expect
MIN_LATENCY_US = 1e-3
MAX_LR = 1e3  # torch takes the optimiser's arguments as float32 (at most ~3.4e38)
MAX_EPS = 1.0
MAX_WEIGHT_DECAY = 10.0
MAX_PARTITION_BYTES = 10**12


def _num(x: float) -> str:
    """A bound as the docs write it: 1e7 rather than 10000000."""
    if x and abs(x) >= 1e4 or 0 < abs(x) < 1e-3:
        mant, exp = f"{x:e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        if mant.lstrip("-").isdigit():  # 1e7, 2e6: a single digit
            return f"{mant}e{int(exp)}"
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def _range(
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    unit: str = "",
    integer: bool = False,
) -> str:
    """The bounds of a field in words, e.g. '1 to 1e7' or '> 0 and <= 1e5 s'."""
    if integer and gt is not None:
        ge, gt = int(gt) + 1, None
    u = f" {unit}" if unit else ""
    if ge is not None and le is not None:
        return f"{_num(ge)} to {_num(le)}{u}"
    ops = ((">=", ge), (">", gt), ("<=", le), ("<", lt))
    return " and ".join(f"{op} {_num(v)}" for op, v in ops if v is not None) + u


def _bounded(
    default: Any,
    text: str,
    *,
    unit: str = "",
    integer: bool = False,
    rng: str | None = None,
    **kw: Any,
) -> Any:
    """A numeric Field whose description ends with its range (its ge, gt, le and lt keywords in
    words, `_range`, unless `rng` says it: where a validator narrows it), so that the docs show
    every bound."""
    limits = {k: kw.pop(k) for k in ("ge", "gt", "le", "lt") if k in kw}
    rng = rng or _range(**limits, unit=unit, integer=integer)
    return Field(default, **limits, description=f"{text} Range: {rng}.", **kw)


def _count(default: Any, text: str, hi: int, lo: int = 1, **kw: Any) -> Any:
    """An integer field from `lo` (1: refused with 'must be > 0') to `hi`."""
    if lo == 1:
        return _bounded(default, text, gt=0, le=hi, integer=True, **kw)
    return _bounded(default, text, ge=lo, le=hi, integer=True, **kw)
