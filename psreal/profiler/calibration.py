"""One calibration run: `calibration_scenario` run for real with message and arbiter traces on,
and what its records and traces say (the worker's packing, the shard's calls)."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any
from unittest import mock

from pssim.profile import CALIBRATION_WARMUP, LinearCost, calibration_scenario
from pssim.scenario import Scenario

# the shard's calls timed in the calibration run (its trace's spans): decode + add of a push, the
# optimiser step, encoding the reply
SERVER_SPAN_OPS = {
    "aggregate": "server_accumulate",
    "update": "server_update",
    "reply": "server_reply",
}


def _in_situ_once(
    scn: Scenario, device: str, ops: dict[str, LinearCost], tr: dict[str, Any]
) -> dict[str, Any]:
    """One calibration run (see measure_in_situ)."""
    import csv
    import tempfile

    from pssim.costs import op_cost, per_partition_ops
    from pssim.sharding import plan_shards
    from pssim.wire import HEADER_BYTES, dense_payload_bytes, message_bytes, push_payload_bytes

    from ..launch import run_local

    cal = calibration_scenario(scn)
    with tempfile.TemporaryDirectory(prefix="psreal-calibration-") as tmp:
        trace, arb_log = Path(tmp) / "trace", Path(tmp) / "arbiter-passes.json"
        # the roles it starts record their messages, the arbiter each pass of its loop
        with mock.patch.dict(
            os.environ, {"PSREAL_MSG_TRACE": str(trace), "PSREAL_ARBITER_LOG": str(arb_log)}
        ):
            folder, summary = run_local(cal, tmp, device, timeout_s=600, stall_s=120)
        passes = json.loads(arb_log.read_text()) if arb_log.is_file() else []
        with open(folder / "steps.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) >= CALIBRATION_WARMUP]
        packs = pack_times(trace, CALIBRATION_WARMUP) if trace.is_dir() else []
        shard_ops = server_span_times(folder / "trace.json", CALIBRATION_WARMUP)
    compute = [float(r["compute_end_s"]) - float(r["compute_start_s"]) for r in rows]
    steps = cal.training.steps
    cpu = summary.get("cpu_seconds", {})
    comm = cal.communication
    numels = [q.numel for q in plan_shards(cal).shards[0]]
    pp = per_partition_ops(comm.compression.kind)

    def op(name: str) -> float:  # as this run timed it where it did, else the microbenchmark's
        return shard_ops.get(f"{name}_s", op_cost(ops[name], name in pp, numels))

    push = message_bytes(
        push_payload_bytes(numels, comm.wire_dtype, comm.compression.kind, comm.compression.ratio)
    )
    reply = message_bytes(dense_payload_bytes(sum(numels), comm.wire_dtype))
    app = cal.cluster.network.emulation == "app"
    send_b, recv_b = (
        (tr["send_cpu_app"].b, tr["recv_cpu_app"].b)
        if app
        else (tr["send_cpu"].b, tr["recv_cpu"].b)
    )
    mean_compute = statistics.fmean(compute)
    pack = statistics.median(packs) if packs else op("worker_pack")
    worker = (
        cpu.get("core0", 0.0) / steps
        - mean_compute
        - pack
        - op("worker_unpack")
        - send_b * (HEADER_BYTES + push)
        - recv_b * reply
    )
    server = (
        cpu.get("core1", 0.0) / steps
        - op("server_accumulate")
        - op("server_update")
        - op("server_reply")
        - recv_b * (HEADER_BYTES + push)
        - send_b * reply
    )
    floor = 10e-6  # a message never costs less than this (guards the subtraction against noise)
    out = {
        "compute_s": mean_compute,
        "compute_samples_s": compute,
        "msg_worker_a": max(worker / 3, floor),
        "msg_server_a": max(server / 3, floor),
        "send_b": send_b,
        "recv_b": recv_b,
        "samples": {
            "cpu_seconds": cpu,
            "steps": steps,
            "arbiter_wakeups": summary.get("arbiter_wakeups"),
            "throughput_samples_per_s": summary["throughput_samples_per_s"],
        },
    }
    if app and "arbiter" in cpu and summary.get("arbiter_wakeups"):
        out["arbiter_wake_s"] = cpu["arbiter"] / summary["arbiter_wakeups"]
    if packs:
        out["pack_s"] = pack
    out.update(shard_ops)
    if app and passes:  # (sleep before, CPU) of each pass, to the microsecond
        out["arbiter_passes"] = [[round(a, 6), round(b, 7)] for a, b in passes]
    return out


def pack_times(trace: str | Path, warmup: int) -> list[float]:
    """From a message trace (psreal/msgtrace.py): for every worker step from `warmup` on, the
    seconds from the end of its computation to its first push's send (packing the gradient)."""
    import bisect

    from pssim import wire

    from .. import msgtrace

    roles, _ = msgtrace.load(trace)
    out: list[float] = []
    for events in roles.values():
        pushes = sorted(e[0] for e in events if e[1] == "send" and e[5] == wire.PUSH)
        for e in events:
            if e[1] == "cpu_compute_end" and e[3] >= warmup:
                i = bisect.bisect_left(pushes, e[0])
                if i < len(pushes):
                    out.append(pushes[i] - e[0])
    return out


def server_span_times(trace_file: str | Path, warmup: int) -> dict[str, float]:
    """From a calibration run's trace.json (one shard): the median wall time of the shard's
    decode + add of a push (`aggregate` spans), optimiser step (`update`) and reply encoding
    (`reply`), each after its first `warmup` spans, as `<op>_s` (`SERVER_SPAN_OPS`). The shard
    has its core to itself but for the arbiter's short passes, so wall time is its CPU. A reply
    that reused the encoding of the same version (0 s) is not an encoding and is skipped."""
    path = Path(trace_file)
    if not path.is_file():
        return {}
    by: dict[str, list[float]] = {k: [] for k in SERVER_SPAN_OPS}
    for e in sorted(
        json.loads(path.read_text()).get("traceEvents", []), key=lambda e: e.get("ts", 0.0)
    ):
        if (
            e.get("ph") == "X"
            and e.get("pid") == 2
            and e.get("name") in by
            and e.get("dur", 0.0) > 0.0
        ):
            by[e["name"]].append(e["dur"] * 1e-6)
    return {
        f"{SERVER_SPAN_OPS[k]}_s": statistics.median(v[warmup:])
        for k, v in by.items()
        if len(v) > warmup
    }
