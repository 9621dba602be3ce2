"""A profile file that `compute.profile` names, read and checked at validation.

`named_profile` reads it with pssim.profile.load_profile (a regular file of bounded size, checked
against the profile schema) and checks the numbers the simulator computes with: finite times of at
most MAX_STEP_TIME_S, a sane core count. A profile file is read once per version of the file
(its modification time and size), however many checks ask for it.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .bounds import MAX_STEP_TIME_S, _num

if TYPE_CHECKING:
    from ..profile import Profile


@lru_cache(maxsize=16)
def _profile_at(path: str, version: tuple[int, int]) -> Profile | str:
    from ..profile import ProfileError, load_profile

    try:
        prof = load_profile(path)
    except ProfileError as exc:
        return str(exc)
    bad = _profile_number_problem(prof)
    return f"{path}: not a usable profile ({bad})" if bad else prof


def named_profile(spec: str) -> Profile | str | None:
    """The profile `compute.profile` names (None for auto and none), or why it is not one: a
    one-line reason from pssim.profile.load_profile, or a number the simulator cannot use."""
    if spec in ("auto", "none"):
        return None
    try:
        st = os.stat(spec)
        version = (st.st_mtime_ns, st.st_size)
    except (OSError, ValueError):
        version = (0, -1)
    return _profile_at(spec, version)


_PROFILE_TIMES = (
    "step_compute_s",
    "compute_samples_s",
    "stage_fwd_s",
    "stage_bwd_s",
    "ops",
    "msg_overhead_s",
    "cpu_slice_s",
    "arbiter_pass_s",
)
MAX_PROFILE_CORES = 100_000
# the host model runs a compute job slice by slice (pssim.sim.host): a slice far shorter than any
# scheduler's (Linux: 0.75 ms and up) would make a step millions of events
MIN_CPU_SLICE_S = 1e-5
# a message's delay is its latency plus this overhead: 0 or at least 1 ns (bounds.MIN_LATENCY_US)
MIN_MESSAGE_DELAY_S = 1e-9


def _numbers(x: Any, where: str) -> list[tuple[str, float]]:
    if isinstance(x, bool) or x is None:
        return []
    if isinstance(x, int | float):
        return [(where, float(x))]
    if isinstance(x, dict):
        return [n for k, v in x.items() for n in _numbers(v, f"{where}.{k}")]
    if isinstance(x, list | tuple):
        return [n for i, v in enumerate(x) for n in _numbers(v, f"{where}.{i}")]
    if hasattr(x, "model_dump"):
        return _numbers(x.model_dump(), where)
    return []


def _profile_number_problem(prof: Profile) -> str | None:
    """What in a loaded profile the simulator cannot compute with (None: nothing)."""
    for name in ("cores", "gpus"):
        v = getattr(prof, name)
        if v is not None and not 0 <= v <= MAX_PROFILE_CORES:
            return f"{name} is {v}, not 0 to {_num(MAX_PROFILE_CORES)}"
    tb = prof.transport_bytes_per_s
    if tb is not None and not (math.isfinite(tb) and 0 < tb <= 1e15):
        return f"transport_bytes_per_s is {tb!r}, not > 0 and <= 1e15"
    for name in _PROFILE_TIMES:
        for where, v in _numbers(getattr(prof, name), name):
            if not (math.isfinite(v) and abs(v) <= MAX_STEP_TIME_S):
                return f"{where} is {v!r}, not a time of at most {_num(MAX_STEP_TIME_S)} s"
    ov = prof.msg_overhead_s
    if not (ov == 0 or MIN_MESSAGE_DELAY_S <= ov):
        return f"msg_overhead_s is {ov!r}, not 0 or at least {_num(MIN_MESSAGE_DELAY_S)} s"
    sl = prof.cpu_slice_s
    if sl is not None and not MIN_CPU_SLICE_S <= sl <= 1.0:
        return f"cpu_slice_s is {sl!r}, not {_num(MIN_CPU_SLICE_S)} to 1 s"
    if any(v <= 0 for v in prof.compute_samples_s):
        return "compute_samples_s holds a time <= 0"
    return None
