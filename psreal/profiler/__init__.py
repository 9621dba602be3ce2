"""`psreal profile`: measure what the real backend costs on this host, for the simulator.

- timing: caches evicted before each run, medians of repeated runs, linear fits;
- compute: the worker's compute step (forward + backward), whole and per pipeline stage;
- microbench: the host ops (packing, unpacking, the shard's calls) and their linear fits;
- transport: the transport's CPU per message and per byte and its delay, cached per host;
- calibration: a real run of the calibration scenario, and what its traces say;
- arbiter: the link arbiter's CPU per pass, by the sleep before it;
- in_situ: medians over the calibration runs, and the host ops' fits moved to them;
- profile: `profile_scenario`, which measures all of these and writes the profile.
"""

from .arbiter import ARBITER_SLEEP_BINS_S, arbiter_pass_bins, arbiter_pass_costs
from .calibration import SERVER_SPAN_OPS, pack_times, server_span_times
from .compute import _worker_compute, measure_compute
from .in_situ import (
    CALIBRATION_RUNS,
    IN_SITU_FIGURES,
    IN_SITU_OPS,
    fit_in_situ,
    measure_in_situ,
    ops_in_situ,
    previous_in_situ_runs,
)
from .microbench import PARTS_K, _fit_parts, measure_ops
from .profile import profile_scenario
from .transport import host_transport, measure_transport

__all__ = [
    "ARBITER_SLEEP_BINS_S",
    "CALIBRATION_RUNS",
    "IN_SITU_FIGURES",
    "IN_SITU_OPS",
    "PARTS_K",
    "SERVER_SPAN_OPS",
    "_fit_parts",
    "_worker_compute",
    "arbiter_pass_bins",
    "arbiter_pass_costs",
    "fit_in_situ",
    "host_transport",
    "measure_compute",
    "measure_in_situ",
    "measure_ops",
    "measure_transport",
    "ops_in_situ",
    "pack_times",
    "previous_in_situ_runs",
    "profile_scenario",
    "server_span_times",
]
