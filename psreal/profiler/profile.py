"""`psreal profile`: measure what the real backend costs on this host, for the simulator.

What it measures, each with the very code the roles run, on one core with one torch thread (as
a role runs), taking the median of repeated timings after warm-up:

- step_compute_s: zero_grad + forward + loss + backward of the whole model at `batch_size` on
  the device (synchronised on CUDA); for pipelines, per stage and per microbatch, the forward
  and the backward separately.
- ops, each fitted as seconds = a + b * n over partition sizes n (see pssim.costs.OPS), and for
  the ops psreal runs partition by partition as a once per call plus p + b * n per partition:
  worker_pack (encode a gradient partition for the wire, staged to pinned host memory on CUDA),
  worker_unpack (wire values into the model's parameters), server_accumulate (decode + add),
  server_apply (decode + one optimiser step), server_update (one optimiser step), server_reply
  (parameters to the wire dtype).
- msg_overhead_s: the transport's fixed cost per message beyond the emulated link time, from a
  ping-pong between two processes through the real Transport and link arbiter over an infinitely
  fast link (half the round trip). It does not depend on the scenario and is cached per host.
- cores: the cores this process may run on (the simulator shares them among roles as psreal's
  placement pins them).

The profile is written (atomically) to the per-host cache pssim reads with `compute.profile: auto`,
or to `--out`.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import torch

from pssim.costs import OPS
from pssim.profile import (
    LinearCost,
    Profile,
    cache_path,
    calibration_scenario,
    host_cpu_slice_s,
    host_id,
    load_profile,
    profile_key,
)
from pssim.results import write_atomic_text
from pssim.scenario import Scenario
from pssim.sharding import plan_shards
from pssim.workload import build_workload

from ..roles import set_threads
from .compute import measure_compute
from .in_situ import measure_in_situ, ops_in_situ, previous_in_situ_runs
from .microbench import measure_ops
from .transport import host_transport


def profile_scenario(
    scn: Scenario,
    device: str,
    out: str | None = None,
    quiet: bool = True,
    force_transport: bool = False,
    more: bool = False,
) -> tuple[Path, Profile]:
    """Measure the scenario's profile and write it (default: the per-host cache pssim reads).

    `more`: if that file holds a profile of the same key that kept its calibration runs, measure
    only CALIBRATION_RUNS more calibration runs and recompute the in-situ figures over all of them
    (the microbenchmarks are kept); else measure a whole profile. `pssim compare --repeats` does
    this once per round, so a profile's calibration spans the session as the real runs do.
    """
    set_threads()
    allowed = sorted(os.sched_getaffinity(0))
    cores = len(allowed)
    key = profile_key(scn, device)
    path = Path(out) if out else cache_path(key)
    old: Profile | None = None
    if more and path.is_file():
        try:
            old = load_profile(path)
        except (OSError, ValueError):
            old = None
        if old is not None and (
            old.key != json.loads(json.dumps(key)) or not previous_in_situ_runs(old)
        ):
            old = None
    tr = host_transport(force_transport)
    if old is not None:
        s1, s2 = dict(old.samples.get("compute", {})), old.samples.get("ops", {})
        step_s = float(s1.get("microbenchmark_step_compute_s", old.step_compute_s))
        fwd, bwd = list(old.stage_fwd_s), list(old.stage_bwd_s)
        ops = {
            k: v for k, v in old.ops.items() if k in OPS
        }  # its microbenchmarks; the message costs follow below
        for (
            k,
            v,
        ) in old.ops.items():  # the microbenchmarks' fits, before the in-situ times moved them
            if k.endswith("_bench") and k[: -len("_bench")] in ops:
                ops[k[: -len("_bench")]] = v
        situ = measure_in_situ(scn, device, ops, tr, previous=previous_in_situ_runs(old))
    else:
        old_aff = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {allowed[0]})  # one core, like a role
        try:
            dev = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
            step_s, fwd, bwd, s1 = measure_compute(scn, dev)
            ops, s2 = measure_ops(scn, dev)
        finally:
            os.sched_setaffinity(0, old_aff)
        situ = measure_in_situ(scn, device, ops, tr)
    app = scn.cluster.network.emulation == "app"
    # per message end: the fixed CPU measured in situ (worker and server ends apart), the per-byte
    # CPU from the transport's streams
    ops["msg_send"] = LinearCost(a=situ["msg_worker_a"], b=situ["send_b"])
    ops["msg_recv"] = LinearCost(a=situ["msg_worker_a"], b=situ["recv_b"])
    ops["msg_send_server"] = LinearCost(a=situ["msg_server_a"], b=situ["send_b"])
    ops["msg_recv_server"] = LinearCost(a=situ["msg_server_a"], b=situ["recv_b"])
    # an end that is already awake (working on another message) pays what a message costs in a
    # back-to-back stream: the CPU per message of the streams' smallest messages, never more
    # than the in-situ cost of a message that wakes its end
    stream = tr["samples"]["streams"]["emulated" if app else "plain"]
    smallest = min(stream, key=int)
    ops["msg_send_busy"] = LinearCost(
        a=min(stream[smallest]["send"][0], situ["msg_worker_a"]), b=situ["send_b"]
    )
    ops["msg_recv_busy"] = LinearCost(
        a=min(stream[smallest]["recv"][0], situ["msg_worker_a"]), b=situ["recv_b"]
    )
    if app:  # the arbiter's CPU per wake-up (messages starting or ending at one instant share one)
        ops["arbiter"] = LinearCost(a=situ.get("arbiter_wake_s", tr["arbiter_cpu"].a))
    # the worker's packing and the shard's calls as the calibration run lived them (its one shard
    # holds every partition the worker pushes)
    from pssim.costs import per_partition_ops

    cal_numels = [q.numel for q in plan_shards(calibration_scenario(scn)).shards[0]]
    ops.update(
        ops_in_situ(ops, situ, cal_numels, per_partition_ops(scn.communication.compression.kind))
    )
    if scn.pipeline.stages == 1:  # the compute phase as a real worker lives it
        step_s, s1 = (
            situ["compute_s"],
            {
                **s1,
                "microbenchmark_step_compute_s": step_s,
                "compute_samples_s": situ["compute_samples_s"],
            },
        )
    wire_rate = tr.get("wire_bytes_per_s")
    delay = tr["delay_app_s"] if scn.cluster.network.emulation == "app" else tr["delay_none_s"]
    prof = Profile(
        key=key,
        host=host_id(),
        device_name=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        cores=cores,
        gpus=torch.cuda.device_count() if device == "cuda" else None,
        torch_version=torch.__version__,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        step_compute_s=step_s,
        compute_samples_s=s1["compute_samples_s"],
        stage_fwd_s=fwd,
        stage_bwd_s=bwd,
        ops=ops,
        msg_overhead_s=delay,
        transport_bytes_per_s=wire_rate,
        cpu_slice_s=host_cpu_slice_s(cores),
        arbiter_pass_s=situ.get("arbiter_pass_s", []) if app else [],
        samples={
            "compute": s1,
            "ops": s2,
            "transport": tr["samples"],
            "in_situ": situ["samples"],
            "model_params": build_workload(scn.model).numel,
        },
    )
    write_atomic_text(path, prof.model_dump_json(indent=2))
    return path, prof
