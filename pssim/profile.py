"""Measured device profiles: the file `psreal profile` writes and pssim reads through
`compute.profile`.

A profile holds what the real backend was measured to cost on one host and device for one model
and batch: forward+backward time per step (and per pipeline stage and microbatch), the host-side
costs of packing, unpacking and applying gradients as `a + b * elements` fits, the transport's
per-message overhead, and the host's core count. It is plain JSON, so pssim reads it without
torch. Profiles are cached per host, device, model, batch and pipeline under `$PSSIM_CACHE`
(default `~/.cache/pssim/profiles`); `compute.profile: auto` picks the cached one if any.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from .scenario import Scenario

PROFILE_VERSION = (
    5  # 4: an op run partition by partition pays `a` once per call and `p` per partition;
)
# 5: compute_busy_factor, since dropped (a worker's compute on a shared core costs the CPU the
# calibration run measured, 0.92-1.04 of it, where that factor said 0.69-0.83: docs/profiling.md);
# a profile that has it still loads, without it
# the host ops psreal runs partition by partition with compression (top-k, int8 coding; unpacking
# a reply into parameter slices always): pssim.costs.per_partition_ops. A profile of version 3
# timed them one partition per call, so its `a` was a cost per partition
PARTITIONED_OPS = ("worker_pack", "worker_unpack", "server_accumulate", "server_apply")


# psreal's link arbiter's passes are told apart by how long it slept before each (seconds): a
# sleep falls in the first bin whose bound is at least as long, every longer one in the last bin
ARBITER_SLEEP_BINS_S = (50e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 1.0)


def sleep_bin(bounds: Sequence[float], sleep_s: float) -> int:
    """The bin of `sleep_s` among `bounds` (increasing): the first bound >= it, else the last.
    psreal profile bins the arbiter's passes so, and the simulator looks a pass's cost up so."""
    return min(bisect.bisect_left(bounds, sleep_s), len(bounds) - 1)


class LinearCost(BaseModel):
    """seconds = a + p + b * n for one call on n elements (n: elements). An op psreal runs
    partition by partition costs a + sum(p + b * n_i) for a message of partitions n_i: `a` once
    per call (what the first partition pays: the call, cold caches), `p` per partition (see
    pssim.costs.op_cost)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    a: float = 0.0
    b: float = 0.0
    p: float = 0.0

    def __call__(self, n: float) -> float:
        return self.a + self.p + self.b * n


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = PROFILE_VERSION
    key: dict[str, Any]
    host: str
    device_name: str
    cores: int = Field(..., gt=0, description="cores the roles may run on")
    gpus: int | None = Field(None, description="CUDA devices on the host (None for cpu profiles)")
    torch_version: str = ""
    created: str = ""
    step_compute_s: float = Field(
        ..., gt=0, description="fwd+bwd of the whole model at batch_size, one device, alone (mean)"
    )
    compute_samples_s: list[float] = Field(
        default_factory=list,
        description="the timings behind it: each step's natural variation is drawn from them",
    )
    stage_fwd_s: list[float] = Field(
        default_factory=list, description="per stage, one microbatch forward"
    )
    stage_bwd_s: list[float] = Field(
        default_factory=list, description="per stage, one microbatch backward"
    )
    ops: dict[str, LinearCost] = Field(
        default_factory=dict, description="host-side costs, see costs.py"
    )
    msg_overhead_s: float = Field(
        0.0, description="critical-path time of a message beyond its link time"
    )
    transport_bytes_per_s: float | None = Field(
        None, description="most one connection of the host's transport moves"
    )
    cpu_slice_s: float | None = Field(
        None,
        gt=0,
        description="the OS scheduler's time slice: how long a compute-bound thread runs "
        "before another takes its core (None: the Linux default for `cores`)",
    )
    arbiter_pass_s: list[tuple[float, float]] = Field(
        default_factory=list,
        description="the link arbiter's CPU per pass of its loop by how long it slept "
        "before: (longest sleep of the bin, CPU seconds of a pass) by increasing sleep, from "
        "the calibration runs (empty: ops['arbiter'] per pass, whatever the sleep)",
    )
    samples: dict[str, Any] = Field(
        default_factory=dict, description="raw measurements behind the fits"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_older(cls, data: Any) -> Any:
        """A profile's `compute_busy_factor` (written by psreal profile for a while) is not used
        any more. A version-3 profile timed each op on one partition per call: its `a` is paid
        per partition, which is `p` now (the same costs, call by call and partition by
        partition)."""
        if isinstance(data, dict) and "compute_busy_factor" in data:
            data = {k: v for k, v in data.items() if k != "compute_busy_factor"}
        if (
            isinstance(data, dict)
            and data.get("version", PROFILE_VERSION) < 4
            and isinstance(data.get("ops"), dict)
        ):
            ops = dict(data["ops"])
            for k in PARTITIONED_OPS:
                if isinstance(ops.get(k), dict) and "p" not in ops[k]:
                    ops[k] = {**ops[k], "a": 0.0, "p": ops[k].get("a", 0.0)}
            data = {**data, "ops": ops}
        return data


def linux_base_slice_s(cores: int) -> float:
    """Linux's default scheduler slice (EEVDF's `base_slice_ns`, CFS's `min_granularity` before it):
    0.75 ms x (1 + log2(min(cores, 8))), the kernel's SCHED_TUNABLESCALING_LOG default
    (kernel/sched/fair.c: sysctl_sched_base_slice, get_update_sysctl_factor)."""
    return 0.75e-3 * (1 + int(math.log2(min(max(cores, 1), 8))))


def host_cpu_slice_s(cores: int) -> float:
    """The slice the kernel says it uses (debugfs, when mounted and readable), else its default."""
    for path in (
        "/sys/kernel/debug/sched/base_slice_ns",
        "/proc/sys/kernel/sched_base_slice_ns",
        "/proc/sys/kernel/sched_min_granularity_ns",
    ):
        try:
            return int(Path(path).read_text().split()[0]) * 1e-9
        except (OSError, ValueError, IndexError):
            continue
    return linux_base_slice_s(cores)


def cache_dir() -> Path:
    return Path(os.environ.get("PSSIM_CACHE", Path.home() / ".cache" / "pssim")) / "profiles"


def host_id() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}|{cpu or platform.processor()}|{os.cpu_count()}"


def profile_key(scn: Scenario, device: str | None = None) -> dict[str, Any]:
    """What a profile depends on: host, device kind, model, batch, pipeline cut, wire format,
    optimiser and link emulation."""
    return {
        "v": PROFILE_VERSION,
        "host": host_id(),
        "device": device or scn.cluster.workers.device,
        "model": scn.model.model_dump(mode="json", exclude_none=True),
        "batch_size": scn.training.batch_size,
        "pipeline": [scn.pipeline.stages, scn.pipeline.microbatches, scn.pipeline.partition],
        "communication": scn.communication.model_dump(mode="json"),
        "optimizer": scn.training.optimizer.model_dump(mode="json"),
        # the per-message costs depend on how psreal emulates the links (its arbiter, or tc)
        "emulation": scn.cluster.network.emulation,
    }


def host_cache_path(name: str, device: str) -> Path:
    """Per-host measurements that do not depend on the scenario (e.g. the transport's overhead)."""
    digest = hashlib.sha256(
        json.dumps([PROFILE_VERSION, host_id(), device, name]).encode()
    ).hexdigest()[:16]
    return cache_dir() / f"host-{name}-{digest}.json"


def cache_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{digest}.json"


# a profile file is at most this large: read no more of what a scenario names
MAX_PROFILE_BYTES = 64 * 2**20


class ProfileError(ValueError):
    """A profile file that cannot be read or is not a profile; its message is one line."""


def load_profile(path: str | Path) -> Profile:
    """The profile in `path`, checked against its schema; ProfileError (one line) otherwise. Only
    a regular file of at most MAX_PROFILE_BYTES is read."""
    p = Path(path)
    try:
        if not p.exists():
            raise ProfileError(f"{path}: no such file")
        if not p.is_file():
            raise ProfileError(f"{path}: not a regular file")
        if p.stat().st_size > MAX_PROFILE_BYTES:
            raise ProfileError(f"{path}: larger than {MAX_PROFILE_BYTES} bytes: not a profile")
        return Profile.model_validate_json(p.read_bytes())
    except OSError as exc:
        raise ProfileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "the file"
        raise ProfileError(
            f"{path}: not a psreal profile ({where}: {err.get('msg', 'invalid')}; "
            f"{exc.error_count()} problem(s))"
        ) from None


# ------------------------------------------------------------ the calibration scenario
CALIBRATION_STEPS, CALIBRATION_WARMUP = 120, 8


def calibration_scenario(scn: Scenario) -> Scenario:
    """The scenario's model, batch, wire format, links and optimiser, run by 1 worker and 1 shard
    under BSP, with no pipeline, straggler, fault or overlap: the smallest real PS exchange."""
    d = scn.model_dump(mode="json")
    d["name"] = f"{scn.name}-calibration"[:100]
    d["training"].update(steps=CALIBRATION_STEPS, warmup_steps=CALIBRATION_WARMUP)
    d["cluster"]["workers"].update(count=1, per_device=1)
    d["cluster"]["servers"]["count"] = 1
    d["sync"] = {"mode": "bsp"}
    d["pipeline"] = {"stages": 1, "microbatches": 1}
    d["stragglers"] = {}
    d["faults"] = []
    d["communication"]["overlap"] = False
    d["compute"] = {"step_time_s": None, "profile": "none"}
    if d["model"].get("hidden") is None:
        d["model"].pop("hidden", None)
    return type(scn).model_validate(d)


def compute_spread(prof: Profile) -> dict[str, Any]:
    """How sure the profile is of its compute per step: the value the simulator uses and, over
    the calibration runs behind it, their number and the lowest and highest run's mean compute
    (`rel_spread` = (max - min) / value). Without calibration runs (a microbenchmark-only or
    older profile) only the value."""
    runs = [
        float(r["compute_s"])
        for r in prof.samples.get("in_situ", {}).get("runs", [])
        if isinstance(r, dict) and isinstance(r.get("compute_s"), (int, float))
    ]
    out: dict[str, Any] = {"compute_s": prof.step_compute_s, "runs": len(runs)}
    if runs:
        out.update(
            min_s=min(runs),
            max_s=max(runs),
            rel_spread=(max(runs) - min(runs)) / prof.step_compute_s,
        )
    return out


_REPORTED: set[str] = set()  # cache entries already reported as unusable


def find_profile(scn: Scenario, device: str | None = None) -> tuple[Profile | None, str | None]:
    """The profile `compute.profile` names for this scenario (None if auto finds none cached).

    A named file that is not a profile raises ProfileError. A cached entry that is not one (a
    corrupt or forged file in the cache) is reported once on stderr, named, and ignored."""
    spec = scn.compute.profile
    if spec == "none":
        return None, None
    if spec == "auto":
        p = cache_path(profile_key(scn, device))
        if not p.exists():
            return None, None
        try:
            return load_profile(p), str(p)
        except ProfileError as exc:
            if str(p) not in _REPORTED:
                _REPORTED.add(str(p))
                print(f"warning: cached profile ignored: {exc}", file=sys.stderr)
            return None, None
    return load_profile(spec), spec
