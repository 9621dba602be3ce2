"""Shared test helpers.

Real-backend tests (psreal): `tiny_scenario` builds a small, fast scenario from a dict plus
`--set`-style overrides; `leftover_processes` finds processes that still carry a marker in their
environment (every process a psreal run starts inherits the launcher's environment), so a test can
assert that no psreal process outlives its run. psutil is not a dependency, hence /proc.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 1,
    "model": {"kind": "mlp", "input_dim": 16, "hidden": [32], "output_dim": 4},
    "training": {
        "batch_size": 8,
        "steps": 6,
        "warmup_steps": 1,
        "samples_per_worker": 64,
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.0},
    },
    "cluster": {
        "workers": {"count": 2, "nic": {"bandwidth_gbps": 10.0, "latency_us": 10}},
        "servers": {"count": 2, "nic": {"bandwidth_gbps": 10.0, "latency_us": 10}},
    },
    "sync": {"mode": "bsp"},
    "sharding": {"policy": "round_robin", "partition_bytes": 512},
}


@pytest.fixture(scope="session")
def tiny_scenario() -> Callable[..., Any]:
    """tiny_scenario("sync.mode=ssp", ...) -> a validated Scenario (the TINY dict plus
    overrides)."""
    from pssim.scenario import scenario_from_dict

    def make(*overrides: str) -> Any:
        return scenario_from_dict(copy.deepcopy(TINY), "<tiny>", list(overrides))

    return make


def processes_with_env(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment contains `marker`."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(
                (
                    ln
                    for ln in (entry / "status").read_text().splitlines()
                    if ln.startswith("State:")
                ),
                "",
            )
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if "zombie" not in state:
            found.append((int(entry.name), cmd.strip()))
    return found


@pytest.fixture(scope="session")
def leftover_processes() -> Callable[[str], list[tuple[int, str]]]:
    """leftover_processes(marker): live processes carrying `marker` in their environment."""
    return processes_with_env
