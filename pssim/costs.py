"""What each action costs: the calibration both backends agree on.

`build_costs` resolves, for one scenario, the compute time of a step (first that applies:
`compute.step_time_s`, a measured profile, the catalog roofline) and the host-side costs the real
backend pays around it: packing and unpacking shard messages on a worker, decoding, accumulating
and applying gradients on a server, packing pull replies, and a fixed per-message transport
overhead. With a profile these are measured (`psreal profile`); without one they are estimated
from the catalog's `cpu` entry as memory traffic (bytes touched per element over memory
bandwidth) and the per-message overhead is zero.

`stage_unit_bounds` cuts a pipeline by the units' roofline costs. Where processes run and how
they are linked is `pssim.layout`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog import DeviceEntry, load_catalog, roofline_s
from .profile import PARTITIONED_OPS, LinearCost, Profile, find_profile, linux_base_slice_s
from .sharding import plan_shards
from .workload import DTYPE_BYTES, build_workload

if TYPE_CHECKING:
    from .scenario import Scenario

# Host-side operations on a message's partitions (see psreal/codec.py and psreal/server.py).
OPS = (
    "worker_pack",  # gradient slice -> wire (cast, compress; device->host copy on cuda)
    "worker_unpack",  # wire params -> model params (cast; host->device copy on cuda)
    "server_accumulate",  # bsp: decode a pushed gradient and add it into the clock's sum
    "server_apply",  # ssp/asp: decode a pushed gradient and apply the optimiser with it
    "server_update",  # bsp: apply the optimiser with the summed gradient
    "server_reply",  # params -> wire for a pull reply
)


# The two views of section 9 of the design: the cluster the scenario describes, and the run
# psreal makes of it on the machine that runs pssim (with the host model)
TARGET, HERE = "target", "here"
VIEWS = (TARGET, HERE)


def device_costs(profile: Profile) -> dict[str, LinearCost]:
    """What a profile measured of the device itself: the host ops of `OPS` at their measured cost
    per element. Their fixed costs per call and per partition (interpreter and scheduler time on
    the profiling host), the transport's per-message CPU, the arbiter, the core count and the
    scheduler slice belong to the host model (`CostModel.host_model`), not to a target cluster."""
    return {k: LinearCost(b=f.b) for k, f in profile.ops.items() if k in OPS}


def profile_matches_device(scn: Scenario, profile: Profile) -> bool:
    """Whether `profile` measured the device the scenario's workers compute on: a CPU profile for
    CPU workers; for GPU workers, a profile of the catalog GPU the scenario names (its name in
    the profile's device name), or of any GPU when the scenario names none."""
    if scn.cluster.workers.device == "cpu":
        return profile.device_name == "cpu"
    gpu = scn.cluster.workers.gpu
    if gpu is None:
        return profile.device_name != "cpu"
    token = gpu.split("-")[0].lower()
    return token in profile.device_name.lower()


@dataclass(frozen=True)
class CostModel:
    """Every cost one simulation pays, resolved once from the scenario (`build_costs`).

    The host model (section 9 of the design: this machine's cores, scheduler slice, per-message
    CPU, loopback transport cap and link arbiter) is set only in the HERE view, from a profile;
    in the TARGET view `cores` is None and the rest are zero or empty, so none of it enters.
    """

    source: str  # where compute times come from: step_time_s | profile:<path> | roofline:<entry>
    compute_s: float  # whole model, batch_size, one uncontended device, fwd+bwd
    stage_fwd_s: tuple[float, ...]  # per stage, one microbatch
    stage_bwd_s: tuple[float, ...]
    ops: dict[str, LinearCost]
    msg_overhead_s: float  # host model: critical-path time of a message beyond its link time
    cores: int | None  # host model: the cores psreal's processes share (None: one each)
    transport_bytes_per_s: float | None = None  # host model: the transport's bound per message
    cpu_slice_s: float = 0.0  # host model: the OS scheduler's slice on shared cores (0: none)
    compute_samples_s: tuple[float, ...] = ()  # measured step timings (profiles only)
    gpus: int | None = None  # host model: CUDA devices the logical devices map onto
    profile_path: str | None = None
    notes: list[str] = field(default_factory=list)
    per_partition: frozenset[str] = frozenset({"worker_unpack"})
    # host model: the arbiter's CPU per pass by the sleep before it
    arbiter_pass_s: tuple[tuple[float, float], ...] = ()
    view: str = "target"  # TARGET | HERE
    ops_source: str = "catalog:cpu"  # where the host ops' costs come from

    def host_model(self) -> dict[str, Any] | None:
        """The host model's components that enter this simulation (None: none, the target view).
        `per_message_cpu` lists the profile's message ops charged at each end."""
        if self.cores is None:
            return None
        msg_ops = sorted(k for k in self.ops if k.startswith("msg_") or k == "arbiter")
        return {
            "cores": self.cores,
            "gpus": self.gpus,
            "cpu_slice_s": self.cpu_slice_s,
            "per_message_cpu": msg_ops,
            "msg_overhead_s": self.msg_overhead_s,
            "transport_cap_bytes_per_s": self.transport_bytes_per_s,
            "arbiter": "arbiter" in self.ops,
        }

    def cost_sources(self) -> dict[str, str]:
        """Where each kind of cost came from, for summary.json and the printed table."""
        return {"compute": self.source, "host_ops": self.ops_source}

    def op(self, name: str, part_numels: list[int] | tuple[int, ...]) -> float:
        return op_cost(self.ops[name], name in self.per_partition, part_numels)


def per_partition_ops(compression: str) -> frozenset[str]:
    """The host ops psreal runs partition by partition (unpacking into parameter slices; top-k
    and int8 coding); the others handle a message's partitions in one call."""
    return frozenset({"worker_unpack"} | (set(PARTITIONED_OPS) if compression != "none" else set()))


def op_cost(f: LinearCost, per_partition: bool, part_numels: list[int] | tuple[int, ...]) -> float:
    """Cost of an op on one message's partitions (see `per_partition_ops`): one call, which pays
    `f.a` once and, run partition by partition, `f.p + f.b * n` per partition (else `f.p` once,
    the whole message being one piece)."""
    if not part_numels:
        return 0.0
    if per_partition:
        return f.a + sum(f.p + f.b * n for n in part_numels)
    return f(sum(part_numels))


def _catalog_ops(scn: Scenario) -> dict[str, LinearCost]:
    """Host costs as memory traffic on the catalog's cpu entry (bytes touched per element)."""
    cpu = load_catalog()["cpu"]
    bw = cpu.bytes_per_s()
    cb = DTYPE_BYTES[scn.model.dtype]
    wb = DTYPE_BYTES[scn.communication.wire_dtype]
    comp = scn.communication.compression
    enc = {"none": cb + wb, "topk": 3 * cb + comp.ratio * (4 + wb), "int8": 2 * cb + 1}[comp.kind]
    dec = {"none": wb + 4, "topk": comp.ratio * (4 + wb) + 4, "int8": 1 + 4}[comp.kind]
    opt = scn.training.optimizer
    # parameter read+write (8) plus state: momentum buffer (8), adam's two moments (16)
    upd = 8 + (16 if opt.name == "adam" else 8 if opt.momentum > 0 else 0) + 4
    per = {
        "worker_pack": enc,
        "worker_unpack": wb + cb,
        "server_accumulate": dec + 8,
        "server_apply": dec + upd,
        "server_update": upd,
        "server_reply": 4 + wb,
    }
    return {k: LinearCost(a=0.0, b=v / bw) for k, v in per.items()}


def _entry_name(scn: Scenario) -> str:
    return scn.cluster.workers.gpu or (
        "cpu" if scn.cluster.workers.device == "cpu" else "A100-80GB"
    )


def _roofline_fb(
    scn: Scenario, units, batch: int, entry: DeviceEntry | None = None
) -> tuple[float, float]:  # noqa: ANN001
    """(forward, backward) roofline seconds of `units` at `batch` samples on `entry` (default: the
    scenario's catalog entry). Forward reads the parameters and writes the saved activations;
    backward does twice the arithmetic and reads the parameters twice."""
    entry = entry or load_catalog()[_entry_name(scn)]
    eb = DTYPE_BYTES[scn.model.dtype]
    fl = sum(u.fwd_flops_per_sample for u in units) * batch
    pb = sum(u.numel for u in units) * eb
    act = sum(u.saved_elems_per_sample for u in units) * batch * eb
    return roofline_s(entry, fl, pb + act, scn.model.dtype), roofline_s(
        entry, 2 * fl, 2 * pb + act, scn.model.dtype
    )


def unit_roofline_s(scn: Scenario) -> list[tuple[float, float]]:
    """(forward, backward) roofline seconds of each unit at the full batch: the proportions the
    simulator uses to spread a measured step over the model's layers."""
    wl = build_workload(scn.model)
    return [_roofline_fb(scn, [u], scn.training.batch_size) for u in wl.units]


def stage_unit_bounds(scn: Scenario) -> list[tuple[int, int]]:
    """Which units each pipeline stage holds: cut by roofline compute (balanced) or by count
    (uniform).

    Both backends and the profiler use this one cut.
    """
    from .pipeline import partition_units

    wl = build_workload(scn.model)
    if scn.pipeline.stages == 1:
        return [(0, len(wl.units))]
    unit_cost = [sum(_roofline_fb(scn, [u], 1)) for u in wl.units]
    return partition_units(unit_cost, scn.pipeline.stages, scn.pipeline.partition)


def build_costs(
    scn: Scenario,
    profile: Profile | None = None,
    profile_path: str | None = None,
    entry: DeviceEntry | None = None,
    entry_name: str | None = None,
    view: str = TARGET,
) -> CostModel:
    """Resolve every cost the simulator needs for this scenario, in one of two views.

    `view` TARGET (the default: `pssim simulate`, `sweep`, `plan`) predicts the cluster the
    scenario describes: a profile enters only as what it measured of the device (compute per
    step, the host ops' cost per element; `device_costs`), and only where it is a profile of the
    scenario's device (`profile_matches_device`); nothing of the machine that runs pssim does.
    `view` HERE (`pssim simulate --here`, `pssim compare`) predicts the run psreal makes on this
    machine: the profile's host model too (`HostCosts`). `entry` (any catalog's device, named
    `entry_name`) replaces the built-in catalog entry for the roofline and means: no profile
    (`pssim plan` on hardware the user does not own).
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS} (got {view!r})")
    notes: list[str] = []
    if (
        profile is None
        and profile_path is None
        and scn.compute.step_time_s is None
        and entry is None
    ):
        profile, profile_path = find_profile(scn)
    if profile is not None and view == TARGET and not profile_matches_device(scn, profile):
        notes.append(
            f"profile {profile_path} measured {profile.device_name}, not the scenario's "
            f"{_entry_name(scn)}: the target view uses the catalog's roofline"
        )
        profile, profile_path = None, None
    wl = build_workload(scn.model)
    B, M, P = scn.training.batch_size, scn.pipeline.microbatches, scn.pipeline.stages
    entry_name = entry_name or _entry_name(scn)
    if (
        scn.cluster.workers.device == "cuda"
        and scn.cluster.workers.gpu is None
        and profile is None
        and entry is None
    ):
        notes.append("no gpu named and no profile: roofline assumes A100-80GB")
    bounds = stage_unit_bounds(scn)
    if scn.compute.step_time_s is not None:
        source = "step_time_s"
        compute_s = scn.compute.step_time_s
        sf, sb = (compute_s / 3,), (2 * compute_s / 3,)
    elif profile is not None:
        source = f"profile:{profile_path}"
        compute_s = profile.step_compute_s
        sf, sb = tuple(profile.stage_fwd_s), tuple(profile.stage_bwd_s)
    else:
        source = f"roofline:{entry_name}"
        compute_s = sum(_roofline_fb(scn, wl.units, B, entry))
        per_stage = [_roofline_fb(scn, wl.units[a:b], B // M, entry) for a, b in bounds]
        sf = tuple(x[0] for x in per_stage)
        sb = tuple(x[1] for x in per_stage)
    if P > 1 and len(sf) != P:
        raise ValueError(f"profile has {len(sf)} stages, scenario {P}")

    ops = _catalog_ops(scn)
    ops_source = "catalog:cpu"
    msg_overhead = 0.0
    cores = gpus = transport = None
    cpu_slice = 0.0
    samples: tuple[float, ...] = ()
    arbiter_pass: tuple[tuple[float, float], ...] = ()
    if profile is not None and view == TARGET:
        ops.update(device_costs(profile))
        ops_source = f"profile:{profile_path} (cost per element)"
        samples = tuple(profile.compute_samples_s)
    elif profile is not None:
        arbiter_pass = tuple((float(g), float(c)) for g, c in profile.arbiter_pass_s)
        ops.update(profile.ops)
        ops_source = f"profile:{profile_path}"
        msg_overhead = profile.msg_overhead_s
        cores, gpus = profile.cores, profile.gpus
        cpu_slice = profile.cpu_slice_s or linux_base_slice_s(profile.cores)
        transport = profile.transport_bytes_per_s
        samples = tuple(profile.compute_samples_s)
    return CostModel(
        view=view,
        ops_source=ops_source,
        source=source,
        compute_s=compute_s,
        stage_fwd_s=sf,
        stage_bwd_s=sb,
        ops=ops,
        msg_overhead_s=msg_overhead,
        cores=cores,
        gpus=gpus,
        transport_bytes_per_s=transport,
        cpu_slice_s=cpu_slice,
        compute_samples_s=samples if scn.compute.step_time_s is None else (),
        profile_path=profile_path,
        per_partition=per_partition_ops(scn.communication.compression.kind),
        notes=notes,
        arbiter_pass_s=arbiter_pass,
    )


def shard_part_numels(scn: Scenario, units: range | None = None) -> list[list[int]]:
    """Per shard, the element counts of its partitions (restricted to `units` for a pipeline
    stage)."""
    plan = plan_shards(scn)
    return [[p.numel for p in parts if units is None or p.unit in units] for parts in plan.shards]
