"""The in-situ figures: medians over repeated calibration runs of what the roles cost inside a
real run, and the host ops' microbenchmark fits moved to what those runs timed."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from pssim.profile import LinearCost, Profile
from pssim.scenario import Scenario

from .arbiter import arbiter_pass_costs
from .calibration import SERVER_SPAN_OPS, _in_situ_once

CALIBRATION_RUNS = 3  # the in-situ figures are medians over this many runs

IN_SITU_FIGURES = (
    "compute_s",
    "msg_worker_a",
    "msg_server_a",
    "arbiter_wake_s",
    "pack_s",
    *(f"{op}_s" for op in SERVER_SPAN_OPS.values()),
)


def measure_in_situ(
    scn: Scenario,
    device: str,
    ops: dict[str, LinearCost],
    tr: dict[str, Any],
    runs: int = CALIBRATION_RUNS,
    previous: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """What the roles cost inside a real run, where microbenchmarks are too kind (caches cold after
    every message, threads waking, gloo's own threads): `runs` short real runs of
    `calibration_scenario`, then from each run's records and each role's measured CPU time

    - the compute phase's duration, step by step (the simulator's compute time and its noise);
    - the CPU each message costs at a worker and at a server end, beyond the host ops measured
      above and the per-byte cost measured by the transport streams: the worker sends a pull
      request and a push and receives a reply per step, the server the reverse, so
      a = (role CPU per step - ops - bytes x per-byte) / 3;
    - the link arbiter's CPU per wake-up (app emulation): messages that start or end at one
      instant are handled in one pass of its loop; and per pass by how long it slept before it
      (`arbiter_pass_costs`: a pass after a long sleep finds its caches cold and costs several
      times one right after another);
    - how long the worker takes from the end of its computation to its push's send (packing the
      gradient: `pack_times`, from the run's message trace), which a microbenchmark on warm,
      reused memory understates several-fold for a large gradient.

    Each figure is the median over the runs, these and `previous` ones (the `runs` list an
    earlier call returned under "samples": `psreal profile --more` adds runs made later, so that
    the figures span the host's drift over minutes); the compute samples are those of the run
    whose mean compute is the median.
    """
    per_run = [*previous, *(_in_situ_once(scn, device, ops, tr) for _ in range(max(1, runs)))]
    out: dict[str, Any] = {}
    for k in IN_SITU_FIGURES:
        vals = [r[k] for r in per_run if k in r]
        if vals:
            out[k] = statistics.median(vals)
    passes = [p for r in per_run for p in r.get("arbiter_passes", [])]
    if passes:
        out["arbiter_pass_s"] = arbiter_pass_costs(passes)
    mid = sorted(per_run, key=lambda r: r["compute_s"])[(len(per_run) - 1) // 2]
    out["compute_samples_s"] = mid["compute_samples_s"]
    out["send_b"], out["recv_b"] = per_run[0]["send_b"], per_run[0]["recv_b"]
    out["samples"] = {"runs": per_run}
    return out


def previous_in_situ_runs(prof: Profile) -> list[dict[str, Any]]:
    """The calibration runs behind a profile, as `measure_in_situ` takes them back (empty for a
    profile that did not keep each run's compute samples)."""
    runs = prof.samples.get("in_situ", {}).get("runs", [])
    keep = ("compute_samples_s", "send_b", "recv_b", "compute_s")
    return [r for r in runs if all(k in r for k in keep)]


def fit_in_situ(
    bench: LinearCost, took_s: float, numels: list[int], per_partition: bool
) -> LinearCost:
    """An op's cost `bench` (a microbenchmark's, on warm reused memory) made to take `took_s` on
    the calibration's partitions `numels`, as the calibration run timed it: what it takes longer
    is charged per element (fresh memory and cold caches grow with the bytes), what it takes less
    is taken off the call's fixed part."""
    from pssim.costs import op_cost

    extra = took_s - op_cost(bench, per_partition, numels)
    if extra >= 0:
        return LinearCost(a=bench.a, p=bench.p, b=bench.b + extra / max(1, sum(numels)))
    return LinearCost(a=max(0.0, bench.a + extra), p=bench.p, b=bench.b)


# the in-situ figure that times each op in the calibration run
IN_SITU_OPS = {"worker_pack": "pack_s", **{op: f"{op}_s" for op in SERVER_SPAN_OPS.values()}}


def ops_in_situ(
    ops: dict[str, LinearCost],
    situ: dict[str, Any],
    numels: list[int],
    per_partition: frozenset[str],
) -> dict[str, LinearCost]:
    """The ops the calibration run timed (`IN_SITU_OPS`: the worker's packing, the shard's calls)
    made to cost that on its partitions `numels` (`fit_in_situ`: an excess per element, a
    shortfall off the fixed part). `server_apply` (decode + one optimiser step, SSP and ASP) is
    not called under the calibration's BSP: it takes what accumulating (decode + add) and updating
    (the step) took beyond or short of their microbenchmarks, added to its own. The
    microbenchmarks' fits are kept as `<op>_bench` (`psreal profile --more` starts from them)."""
    from pssim.costs import op_cost

    def bench_s(op: str) -> float:
        return op_cost(ops[op], op in per_partition, numels)

    out: dict[str, LinearCost] = {}
    for op, figure in IN_SITU_OPS.items():
        if figure in situ and op in ops:
            out[f"{op}_bench"] = ops[op]
            out[op] = fit_in_situ(ops[op], situ[figure], numels, op in per_partition)
    timed = ("server_accumulate", "server_update")
    if "server_apply" in ops and all(IN_SITU_OPS[op] in situ and op in ops for op in timed):
        shift = sum(situ[IN_SITU_OPS[op]] - bench_s(op) for op in timed)
        out["server_apply_bench"] = ops["server_apply"]
        out["server_apply"] = fit_in_situ(
            ops["server_apply"],
            max(bench_s("server_apply") + shift, 0.0),
            numels,
            "server_apply" in per_partition,
        )
    return out
