"""Kernel link emulation (`cluster.network.emulation: kernel`, psreal/netem_kernel.py).

- Where it cannot run (no root, no `ip`/`tc`), `psreal run` stops before anything starts with one
  line naming what is missing and exit code 2; the tests that need it skip with that reason.
- A bandwidth-bound scenario (each step moves ~0.8 MB per worker each way over 0.2 Gbit/s worker
  NICs and a shared 0.4 Gbit/s server NIC) runs with each role in its own network namespace,
  shaped by tc, and its throughput is within 0.85x-1.2x of the same scenario under app emulation:
  an independent check of the link model. Four runs on the 2-core development VM (2026-12-08,
  netem absent, latency added by the transport) gave ratios 0.968, 0.977, 1.000 and 1.094; the
  band leaves room for a busy machine. Both numbers are printed (`pytest -s`).
- Every namespace, veth pair and bridge a run made is gone afterwards, after a failed run too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pssim.scenario import resolved_yaml, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]

BANDWIDTH_BOUND: dict[str, Any] = {
    "name": "kernel-check",
    "seed": 3,
    "model": {"kind": "mlp", "input_dim": 784, "hidden": [256], "output_dim": 10},
    "training": {
        "batch_size": 32,
        "steps": 14,
        "warmup_steps": 3,
        "samples_per_worker": 256,
        "optimizer": {"name": "sgd", "lr": 0.01},
    },
    "cluster": {
        "workers": {"count": 2, "nic": {"bandwidth_gbps": 0.2, "latency_us": 200}},
        "servers": {"count": 1, "nic": {"bandwidth_gbps": 0.4, "latency_us": 200}},
        "network": {"emulation": "kernel"},
    },
    "compute": {"step_time_s": 0.002},
    "sync": {"mode": "bsp"},
}


def _kernel_scenario(*overrides: str) -> Any:
    import copy

    return scenario_from_dict(copy.deepcopy(BANDWIDTH_BOUND), "<kernel-check>", list(overrides))


def _ours_left() -> list[str]:
    """Namespaces and links made by kernel emulation from this process that still exist."""
    tag = f"{os.getpid():x}x"
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [
        ln
        for ln in (ns + links).splitlines()
        if f"psreal-{tag}" in ln or f"psbr{tag}" in ln or f"psv{tag}" in ln
    ]


@pytest.fixture
def kernel_or_skip() -> None:
    from psreal.netem_kernel import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel link emulation unavailable: needs {reason}")


def test_unavailable_kernel_emulation_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from psreal import netem_kernel

    netem_kernel._probe.cache_clear()
    try:
        monkeypatch.setattr(netem_kernel.os, "geteuid", lambda: 1000)
        with pytest.raises(netem_kernel.KernelEmulationUnavailable) as info:
            netem_kernel.check_kernel_emulation(_kernel_scenario())
    finally:
        monkeypatch.undo()
        netem_kernel._probe.cache_clear()
    assert info.value.code == 2
    assert info.value.lines == [
        "error: cluster.network.emulation: kernel needs root (it creates network namespaces, "
        "veth pairs and tc qdiscs); use emulation: app, which needs none of this"
    ]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_psreal_run_refuses_kernel_emulation_without_tc_before_anything_runs(
    tmp_path: Path,
) -> None:
    file = tmp_path / "k.yaml"
    file.write_text(resolved_yaml(_kernel_scenario()), encoding="utf-8")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no ip, no tc
    proc = subprocess.run(
        [sys.executable, "-m", "psreal.cli", "run", str(file), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: cluster.network.emulation: kernel needs "
        + (
            "the `ip` command (iproute2) on PATH"
            if os.geteuid() == 0
            else "root (it creates network namespaces, veth pairs and tc qdiscs)"
        )
        + "; use emulation: app, which needs none of this"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.kernel
@pytest.mark.timeout(240)
def test_kernel_shaped_throughput_is_close_to_the_app_emulated_one(
    kernel_or_skip: None, tmp_path: Path
) -> None:
    from psreal.launch import run_local

    _, kernel = run_local(
        _kernel_scenario(), str(tmp_path / "kernel"), "cpu", timeout_s=180, stall_s=60
    )
    assert not _ours_left()
    _, app = run_local(
        _kernel_scenario("cluster.network.emulation=app"),
        str(tmp_path / "app"),
        "cpu",
        timeout_s=180,
        stall_s=60,
    )
    k, a = kernel["throughput_samples_per_s"], app["throughput_samples_per_s"]
    print(
        f"\nthroughput: kernel (tc, {kernel['kernel_latency']} latency) {k:.1f} samples/s, "
        f"app arbiter {a:.1f} samples/s, ratio {k / a:.3f}"
    )
    assert kernel["emulation"] == "kernel" and app["emulation"] == "app"
    assert kernel["bytes_sent_total"] == app["bytes_sent_total"]
    assert 0.85 * a <= k <= 1.2 * a


@pytest.mark.slow
@pytest.mark.kernel
@pytest.mark.timeout(120)
def test_a_failed_kernel_run_removes_its_namespaces(
    kernel_or_skip: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psreal.launch import RunFailed, run_local

    monkeypatch.setenv("PSREAL_FAULT", "worker:1:step:2:kill")
    with pytest.raises(RunFailed) as info:
        run_local(_kernel_scenario(), str(tmp_path / "out"), "cpu", timeout_s=90, stall_s=30)
    assert "worker 1 (rank 3): killed by signal 9 (SIGKILL)" in "\n".join(info.value.lines)
    assert not _ours_left()
    assert not (tmp_path / "out" / "kernel-check" / "real").exists()
